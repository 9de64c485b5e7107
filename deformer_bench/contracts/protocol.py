"""The worker protocol: what the host asks a runner (a job) and what the runner answers (a result), one type per
mode (probe, timing, memory, parity), shared by the host (bench/plan.py, bench/run.py, bench/parity.py) and both
runners (bench/runner.py on onnxruntime, bench/torch_runner.py on the PyTorch DeFormer).

On the wire each is one flat JSON object (`as_json`, read back by `from_json`): the host writes a job to the
runner's standard input, the runner writes its result to a file of its work directory. A field a mode does not
know is refused, so host and runner cannot drift apart without a word. Standard library only: this module is
staged with the runner on the measured machine.
"""

from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

PROTOCOL_VERSION = 4  # 4: timing's served_codec (online_served_codec); 3: typed jobs and results (parity names
# inputs_file and outputs_file); 2: paths relative to the staged work directory, probe and parity modes

# Which graphs each measured path runs, in order.
PATH_GRAPHS = {
    "unsplit": ("full",),
    "online": ("lower_question", "upper"),  # question lower layers + cached passage states + upper
    "online_served": ("lower_question", "upper"),  # the same, the states gathered from a memory-mapped cache file
    "online_served_codec": ("lower_question", "upper"),  # the same, codes gathered and decoded (a learned codec)
    "online_miss": ("lower_passage", "lower_question", "upper"),  # a cache miss: the passage's states computed online
    "online_device_io": ("lower_question", "upper"),  # the same, cached states and hand-over kept on the device
    "passage_precompute": ("lower_passage",),  # offline: passage lower layers, for the cache
}
STANDARD_PATHS = ("unsplit", "online", "passage_precompute")  # measured on every device; the others on some
SERVED_PATH = "online_served"  # onnxruntime's runner only; timed, not memory-profiled (its RSS counts mapped pages)
CODEC_SERVED_PATH = "online_served_codec"  # a timing job's served_codec only: timed, like online_served, alone
MISS_PATH = "online_miss"  # onnxruntime's runner only: the question's passage is not in the cache
FLOAT32_BASELINE = "unsplit_float32"  # a variant's float32 parent, unsplit: what a user has before optimizing
SERVED_CACHE_FILE = "served_passage_hidden.npy"
SERVED_CODES_PREFIX = "served_passage_"  # + a codec's array name + ".npy": online_served_codec's files
SERVED_CACHE_MIN_MB = 256  # larger than any CPU's last-level cache


class ProtocolError(ValueError):
    """A job or a result that is not of this protocol: another version, mode or shape."""


@dataclass(frozen=True)
class InputSpec:
    """The full-length random inputs of one batch, made from a seed on whichever machine runs the job."""

    batch_size: int
    question_len: int
    passage_len: int
    passage_token_type: int
    vocab_size: int
    seed: int = 0


@dataclass(frozen=True)
class Rounds:
    """How long one interleaved loop runs: until every path has `min_count` samples and `min_time_s` passed,
    or `max_time_s` (runner.interleave)."""

    min_count: int
    min_time_s: float
    max_time_s: float


@dataclass(frozen=True)
class TorchModel:
    """What the PyTorch backend's runner builds: the source ({"model_dir": path} or {"arch": name}), the DeFormer
    settings of the exported graphs, and the device and dtype it runs in."""

    source: dict
    deformer: dict
    device: str
    dtype: str


# Records flattened into the job's own object on the wire, each recognised by its first field.
_NESTED = {"inputs": InputSpec, "torch_model": TorchModel}


@dataclass(frozen=True, kw_only=True)
class Job:
    """What every job carries; each mode adds its own fields."""

    mode: ClassVar[str] = ""
    session: dict = field(default_factory=dict)  # runtime.sessions settings (provider, threads, ...)
    inputs: InputSpec = None
    torch_model: TorchModel = None  # the PyTorch backend's jobs only
    pin_cores: tuple = ()  # the target's cores, added by the transport (bench/targets.py)

    def as_json(self) -> dict:
        data = {"protocol_version": PROTOCOL_VERSION, "mode": self.mode}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in _NESTED:
                data.update(asdict(value) if value is not None else {})
            elif isinstance(value, Rounds):
                data[item.name] = asdict(value)
            elif item.name == "pin_cores":
                data.update({"pin_cores": list(value)} if value else {})
            else:
                data[item.name] = list(value) if isinstance(value, tuple) else value
        return data

    @staticmethod
    def from_json(data) -> "Job":
        """The typed job of a JSON object; ProtocolError for another version, an unknown mode or field."""
        mode = _checked_mode(data, "job", JOBS)
        kind = JOBS[mode]
        values = {key: value for key, value in data.items() if key not in ("protocol_version", "mode")}
        nested = {}
        for name, record in _NESTED.items():
            names = [item.name for item in fields(record)]
            if names[0] in values:
                nested[name] = _record(record, {key: values.pop(key) for key in names if key in values}, mode)
        own = {item.name: item for item in fields(kind)}
        for name, value in values.items():
            if name not in own:
                raise ProtocolError(f"a {mode} job has no field {name!r}")
            if own[name].type in ("Rounds", Rounds):
                values[name] = _record(Rounds, value, mode)
            elif isinstance(value, list):
                values[name] = tuple(value)
        return kind(**values, **nested)

    def read_result(self, data) -> "Result":
        """The typed result of this job's mode, from the runner's JSON object."""
        return RESULTS[self.mode].from_json(data)


def _record(record, values, mode: str):
    if not isinstance(values, dict):
        raise ProtocolError(f"a {mode} job's {record.__name__} must be an object, found {values!r}")
    try:
        return record(**values)
    except TypeError as error:
        raise ProtocolError(f"a {mode} job's {record.__name__} is incomplete or unknown: {error}") from None


def _checked_mode(data, what: str, kinds: dict) -> str:
    if not isinstance(data, dict):
        raise ProtocolError(f"a {what} must be a JSON object, found {type(data).__name__}")
    if data.get("protocol_version", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise ProtocolError(f"this side speaks protocol {PROTOCOL_VERSION}, the {what} has "
                            f"{data.get('protocol_version')!r}")
    if data.get("mode") not in kinds:
        raise ProtocolError(f"a {what} of unknown mode {data.get('mode')!r} (known: {', '.join(kinds)})")
    return data["mode"]


@dataclass(frozen=True, kw_only=True)
class ProbeJob(Job):
    """What the target is (read there), and which providers it has."""

    mode: ClassVar[str] = "probe"
    device: str = "cpu"  # the PyTorch backend's device, whose facts the probe adds


@dataclass(frozen=True, kw_only=True)
class GraphSetJob(Job):
    """A job that runs the graphs of the graph set staged on the target at `graphs_dir`."""

    graphs_dir: str = None


@dataclass(frozen=True, kw_only=True)
class TimingJob(GraphSetJob):
    """Every graph loaded, then `paths` timed interleaved round by round (paired samples)."""

    mode: ClassVar[str] = "timing"
    paths: tuple = STANDARD_PATHS
    warmup: Rounds
    measure: Rounds
    float32_graphs_dir: str = None  # a variant's float32 parent, its unsplit model timed in the same rounds
    served_cache_mb: int = SERVED_CACHE_MIN_MB
    passage_cache_out: str = None  # where the first process saves the passage states for the memory jobs
    # online_served_codec's codec, where `paths` has it: {"name", "settings", "codebook_file", "codes_file"} (the
    # two .npz files staged in the work directory: the codebook's arrays, and windows' codes {array: [W, Lp, ...]})
    served_codec: dict = None


@dataclass(frozen=True, kw_only=True)
class MemoryJob(GraphSetJob):
    """One path's graphs loaded alone, run `iterations` times; resident memory after loading and at the peak."""

    mode: ClassVar[str] = "memory"
    path: str
    iterations: int
    passage_cache_in: str = None


@dataclass(frozen=True, kw_only=True)
class ParityJob(GraphSetJob):
    """Each path once on the staged inputs (an .npz of the work directory); the outputs saved for the host."""

    mode: ClassVar[str] = "parity"
    inputs_file: str
    outputs_file: str
    paths: tuple = ("unsplit", "online")


@dataclass(frozen=True, kw_only=True)
class Result:
    """What every result carries besides its mode's own fields."""

    mode: ClassVar[str] = ""
    pid: int = None
    usable_cores: list = None  # the cores the runner could use (a profile's pin_cores, where the OS applied them)
    onnxruntime: str = None  # the version that ran the job (onnxruntime's runner)
    torch: str = None  # the version that ran the job (the PyTorch backend's runner)

    def as_json(self) -> dict:
        return {"protocol_version": PROTOCOL_VERSION, "mode": self.mode,
                **{item.name: getattr(self, item.name) for item in fields(self)}}

    @classmethod
    def from_json(cls, data) -> "Result":
        """The typed result of a runner's JSON object; ProtocolError for another mode or an unknown field."""
        _checked_mode(data, f"{cls.mode} result", {cls.mode: cls})
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known - {"protocol_version", "mode"})
        if unknown:
            raise ProtocolError(f"a {cls.mode} result has no field {unknown[0]!r}")
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except TypeError as error:
            raise ProtocolError(f"a {cls.mode} result is incomplete: {error}") from None


@dataclass(frozen=True, kw_only=True)
class ProbeResult(Result):
    mode: ClassVar[str] = "probe"
    environment: dict  # runtime.target_environment.describe_target (+ "torch" from the PyTorch runner)


@dataclass(frozen=True, kw_only=True)
class TimingResult(Result):
    mode: ClassVar[str] = "timing"
    samples_ns: dict  # {path: [ns of each round]}
    stopped_by_time_cap: bool = False
    load_s: float = None
    served_cache_bytes: int = None
    served_codes_bytes: int = None  # online_served_codec's files
    served_codec_one_blas_thread: bool = None  # whether its decode held numpy's BLAS to one thread (threadpoolctl)
    providers_used: dict = None
    provider_options_used: dict = None
    thermal_before_c: dict = None
    thermal_after_c: dict = None


@dataclass(frozen=True, kw_only=True)
class MemoryResult(Result):
    mode: ClassVar[str] = "memory"
    path: str
    iterations: int
    rss_after_load_mb: float = None
    rss_source: str = None
    load_peak_rss_mb: float = None
    peak_rss_mb: float = None
    peak_source: str = None
    peak_excludes_loading: bool = False  # only a reset VmHWM excludes loading
    gpu_memory_after_load_mb: float = None
    gpu_memory_after_runs_mb: float = None  # onnxruntime: NVML's figure for this process
    gpu_memory_peak_mb: float = None  # PyTorch: its allocator's peak while running


@dataclass(frozen=True, kw_only=True)
class ParityResult(Result):
    mode: ClassVar[str] = "parity"
    wall_s: dict  # {path: seconds of its one run}
    outputs_file: str
    providers_used: dict = None
    provider_options_used: dict = None


JOBS = {kind.mode: kind for kind in (ProbeJob, TimingJob, MemoryJob, ParityJob)}
RESULTS = {kind.mode: kind for kind in (ProbeResult, TimingResult, MemoryResult, ParityResult)}
