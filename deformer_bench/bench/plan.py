"""What a device is measured with: its profile, backend and target (DevicePlan), the jobs its runner gets,
and the preflight probe that finds, before any export, a device that cannot run here."""

from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..contracts.errors import RunnerError, TargetError
from ..contracts.protocol import (CODEC_SERVED_PATH, MISS_PATH, SERVED_PATH, STANDARD_PATHS, InputSpec, ProbeJob,
                                  ProtocolError, Rounds, TimingJob, TorchModel)
from ..exporters.variants import TOLERANCES
from .devices import ARM_MACHINES

TORCH_RUNNER_SCRIPT = Path(__file__).resolve().parent / "torch_runner.py"


@dataclass(frozen=True)
class ServedCodec:
    """A passage cache stored in a learned codec (pq, rq or binary) that online_served_codec serves from
    (deformer-bench --served-cache): its codec, as the cache stores it (name, settings, codebook arrays), and the
    codes of its first windows ({array: [W, Lp, ...]}), staged on the target, where the runner serves them from
    memory-mapped files and decodes them in every call (runtime.codec_decode)."""

    cache: str  # the cache's folder, as given
    name: str
    settings: dict
    codebook: dict
    codes: dict
    description: str  # the codec and its settings, e.g. "pq m=92 transform=fisher alpha=0.1"
    code_bytes_per_token: float
    # the config's upper graph with the codec's product inside (pq with a transform: exporters/codec_upper.py, made
    # and loaded once on the host, api.served_codec), the runner then running only the look-ups; None: the runner
    # decodes whole windows in numpy (rq, binary, plain pq, a graph set in the ORT format only)
    coded_upper: bytes = field(default=None, repr=False)

    def stage(self, work, index: int) -> dict:
        """The codebook and codes written into the work directory (and upper's graph with the product inside, where
        it has one); the timing job's served_codec naming them."""
        staged = {"name": self.name, "settings": dict(self.settings),
                  "codebook_file": work.put_arrays(f"served_codebook_{index}.npz", self.codebook),
                  "codes_file": work.put_arrays(f"served_codes_{index}.npz", self.codes)}
        if self.coded_upper is not None:
            staged["upper_file"] = work.put_bytes(f"served_upper_{index}.onnx", self.coded_upper)
        return staged

    def record(self) -> dict:
        """What the results say of it."""
        return {"cache": self.cache, "codec": self.description, "code_bytes_per_token": self.code_bytes_per_token,
                "windows_staged": int(len(next(iter(self.codes.values())))),
                "product": "in upper's graph" if self.coded_upper is not None else "numpy"}


@dataclass
class DevicePlan:
    """A device, its profile, its backend and its target (None with `error` where it could not be made)."""

    device: object
    profile: object
    target: object = None
    error: str = None
    failure: Exception = None  # the typed error behind `error` (its hint and exit code)
    backend: str = "onnxruntime"
    torch_source: dict = None  # the PyTorch backend's model: {"model_dir": path} or {"arch": name}
    skipped: str = None  # why the device cannot run here at all (preflight), e.g. no CUDA device
    float32_graphs: dict = field(default_factory=dict)  # staged variant graph set -> its staged float32 parent
    served_codecs: dict = field(default_factory=dict)  # staged graph set -> its timing jobs' served_codec
    environment: dict = None  # the target's own description, from the preflight probe

    @property
    def torch_device(self) -> str:
        """The device the PyTorch backend puts its model on."""
        return "cuda" if self.device.name == "cuda" else "cpu"

    def probe_job(self) -> ProbeJob:
        return ProbeJob(device=self.torch_device)

    def runner_script(self) -> str:
        return "runner.py" if self.backend == "onnxruntime" else str(TORCH_RUNNER_SCRIPT)

    def precision(self, variant: str = "float32") -> str:
        """What the device computes in: the PyTorch backend's torch_dtype, or the element type of the graphs'
        weights and activations (float16 for that variant, else float32: int8 graphs take and give float32)."""
        if self.backend == "torch":
            return self.profile.torch_dtype
        return "float16" if (self.profile.variant or variant) == "float16" else "float32"

    def parity_tolerance(self, variant: str = "float32") -> float:
        """The device's fp32 tolerance; half precision rounds every activation to 8 (bf16) or 11 (fp16)
        mantissa bits, and across the layers logits move by up to a few hundredths (fp16) or tenths (bf16)."""
        low_precision = {"float16": TOLERANCES["float16"], "bfloat16": 0.5}
        return max(self.device.parity_tolerance, low_precision.get(self.precision(variant), 0.0))

    def provider_asked(self) -> str:
        if self.backend == "torch":
            return f"torch:{self.torch_device}:{self.profile.torch_dtype}"
        return self.device.provider


def preflight(plans: list) -> None:
    """Probe every device's target before any export (seconds, where exporting BERT-base takes minutes): a
    device without its hardware or provider is marked skipped (and said so now), an unreachable target
    failed (the command says it, once it knows whether any other device can run)."""
    for plan in plans:
        if plan.error:
            continue
        try:
            with plan.target.staged() as work:
                work.script = plan.runner_script()
                plan.environment = run_job(work, plan.probe_job()).environment
        except (TargetError, RunnerError) as error:
            plan.error, plan.failure = error.message, error
            continue
        plan.skipped = unavailable_reason(plan.device, plan.environment, plan.backend)
        if plan.skipped:
            tqdm.write(f"{plan.device.name}: skipped ({plan.skipped})")


def run_job(work, job):
    """A typed job (contracts.protocol) run in a staged work directory (bench/targets.py), its typed result; a
    result of another shape is the runner's failure."""
    data = work.run_job(job.as_json())
    try:
        return job.read_result(data)
    except ProtocolError as error:
        raise RunnerError(f"runner job ({job.mode}) returned a result of another protocol: {error}",
                          "stage the runner of this deformer-bench version (the target may run another)") from None


def job_fields(config, plan, batch: int) -> dict:
    """What every job of a config, device and batch size carries: its inputs, session and the PyTorch model."""
    deformer = config.deformer
    torch_model = None if plan.backend != "torch" else TorchModel(
        source=plan.torch_source, deformer=config.manifest["deformer"], device=plan.torch_device,
        dtype=plan.profile.torch_dtype)
    inputs = InputSpec(batch_size=batch, question_len=deformer.question_len, passage_len=deformer.passage_len,
                       passage_token_type=deformer.passage_token_type, vocab_size=config.model.vocab_size,
                       seed=plan.profile.seed)
    return {"inputs": inputs, "session": session_settings(plan.device, plan.profile), "torch_model": torch_model}


def session_settings(device, profile) -> dict:
    settings = {"provider": device.provider, "intra_op_threads": profile.intra_op_threads,
                "inter_op_threads": profile.inter_op_threads, "allow_spinning": profile.allow_spinning,
                "graph_optimization": profile.graph_optimization}
    if profile.provider_options:
        settings["provider_options"] = dict(profile.provider_options)
    return settings


def measured_paths(plan) -> list:
    """Every device's three paths; with onnxruntime also online_served (the passage states gathered from a
    memory-mapped cache file in every call), online_miss (a cache miss: lower_passage in the call) and the
    device's own (cuda's online_device_io, an IO binding)."""
    if plan.backend != "onnxruntime":
        return list(STANDARD_PATHS)
    return [*STANDARD_PATHS, SERVED_PATH, MISS_PATH, *plan.device.extra_paths]


def memory_paths(plan) -> list:
    """The paths given a memory process: online_served's resident set would count the cache file's mapped pages,
    which the OS shares and can drop; its memory is online's."""
    return [path for path in measured_paths(plan) if path != SERVED_PATH]


def timing_job(config, plan, batch: int, graphs: str) -> TimingJob:
    """The timing job of a staged graph set; with a served codec staged for it, online_served_codec timed too."""
    profile = plan.profile
    served_codec = plan.served_codecs.get(graphs)
    paths = [*measured_paths(plan), *([CODEC_SERVED_PATH] if served_codec else [])]
    return TimingJob(**job_fields(config, plan, batch), graphs_dir=graphs, paths=tuple(paths),
                     served_codec=served_codec,
                     float32_graphs_dir=plan.float32_graphs.get(graphs), served_cache_mb=profile.served_cache_mb,
                     warmup=Rounds(profile.warmup_min_count, profile.warmup_min_time_s, profile.max_time_s),
                     measure=Rounds(profile.min_count, profile.min_time_s, profile.max_time_s))


def unavailable_reason(device, environment: dict, backend: str = "onnxruntime"):
    """Why a device cannot run on its target at all (a skip, not a failure), or None."""
    if backend == "torch":
        facts = environment["torch"]
        if device.name == "cuda" and not facts["cuda_available"]:
            return f"no CUDA device (torch {facts['version']}, CUDA build {facts['cuda_build']})"
        return None
    onnxruntime = environment["onnxruntime"]
    if device.provider not in onnxruntime["available_providers"]:
        return (f"onnxruntime {onnxruntime['version']} has no {device.provider} "
                f"(available: {', '.join(onnxruntime['available_providers']) or 'none'})")
    if device.name == "cuda" and not environment["gpus"] and not environment.get("nvidia_devices"):
        return "no CUDA device"
    return None


def check_target_machine(device, target, environment: dict) -> None:
    if device.name == "arm" and environment["machine"].lower() not in ARM_MACHINES:
        raise TargetError(f"arm: the target {target.describe()} is a {environment['machine']} machine",
                          "point --target or the profile's target at an aarch64 machine")
