"""benchmark(BenchmarkRequest) -> BenchmarkResult: latency, throughput and memory of the DeFormer online path against
the unsplit model, on one or more devices (what deformer-bench does without --scenario)."""

import dataclasses
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from ..bench.devices import ARM_MACHINES, check_target_settings, make_target, resolve_devices
from ..bench.plan import DevicePlan, preflight
from ..bench.run import (DEFAULT_PROCESSES, BenchConfig, check_process_count, measured_models, run_benchmark,
                         save_results, start_machine_state, variant_label)
from ..contracts.errors import ConfigError, ProfileError, RunnerError, TargetError
from ..contracts.manifest import VARIANTS, load_graph_set
from ..contracts.results import HEADLINE_PATH, ResultsDocument
from ..exporters.onnx_export import export_graph_set
from ..files import check_distinct_paths, check_output_dir, scratch_directory
from ..model import (DEFAULT_POSITION_OFFSET, Deformer, DeformerConfig, default_model_dir, load_qa_model,
                     random_model, read_model_dir)
from ..profiles import PROFILE_SUFFIXES, load_profile
from ..report import write_report
from .common import PathFields
from .served_codec import check_served_cache_request, with_served_codec

DEFAULT_MODEL_LABEL = "MiniLM-L6-H384"
BACKENDS = ("onnxruntime", "torch")


@dataclass
class BenchmarkRequest(PathFields):
    """What to measure, one field per deformer-bench option (README, "Bench"). The source is one of `model` (a
    DeFormer or Hugging Face model directory), `arch` (a known shape with random weights) and `graphs` (graph
    sets written by export); none of them: MiniLM-L6. `device` and `profile` are comma-separated as the options
    take them; `layers` None: the model's own k, else 3/4 of its layers."""

    model: Path = None
    arch: str = None
    graphs: tuple = ()
    layers: tuple = None
    device: str = "cpu"
    profile: str = None
    variants: tuple = ("float32",)
    backend: str = "onnxruntime"
    target: str = None
    allow_emulation: bool = False
    question_len: int = None
    passage_len: int = None
    batch_sizes: tuple = None
    processes: int = None
    position_offset: str = None
    output: Path = Path("results")
    quick: bool = False
    note: str = ""
    progress: bool = True
    served_cache: Path = None  # a learned codec's passage cache of `graphs`: online_served_codec timed from it too
    command: tuple = ("deformer_bench.api.benchmark",)  # what the results record as the command run

    def __post_init__(self):
        super().__post_init__()  # model, output
        self.graphs = tuple(Path(directory) for directory in self.graphs or ())
        self.variants = tuple(self.variants)
        self.layers = None if self.layers is None else tuple(self.layers)
        self.batch_sizes = None if self.batch_sizes is None else tuple(self.batch_sizes)


@dataclass
class BenchmarkResult:
    """The results folder written (results.json, report.md, plots) and its document."""

    directory: Path
    results: ResultsDocument

    @property
    def report(self) -> Path:
        return self.directory / "report.md"

    @property
    def warnings(self) -> list:
        return self.results.warnings

    @property
    def failures(self) -> list:
        return self.results.failures

    @property
    def exit_code(self) -> int:
        """0 when every device ran or was skipped for want of hardware; 3 when something failed."""
        return RunnerError.exit_code if self.results.failures else 0

    def speedup(self, path: str = HEADLINE_PATH, batch_size: int = None, config: int = 0) -> float:
        """The paired speed-up of `path` (default the online path) over the unsplit model: the median ratio of
        their times, of the `config`-th measured configuration at `batch_size` (default its first)."""
        measured = [record for record in self.results.configs if record["batches"]]
        if not measured:
            raise RunnerError("nothing in these results was timed", "see the run's failures and warnings")
        batches = measured[config]["batches"]
        batch = next((record for record in batches if batch_size in (None, record["batch_size"])), None)
        if batch is None:
            raise ConfigError(f"batch size {batch_size} was not measured",
                              f"measured: {', '.join(str(record['batch_size']) for record in batches)}")
        return batch["speedup_vs_unsplit"][path]["ratio"]


def variant_names(text) -> list:
    """--variant's comma-separated graph variants (None: float32), each known and given once."""
    names = [name.strip() for name in (text or "float32").split(",") if name.strip()]
    unknown = [name for name in names if name not in ("float32", *VARIANTS)]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(f"--variant {text!r} is not a list of distinct variants",
                          f"use some of: float32, {', '.join(VARIANTS)}, e.g. --variant float32,int8")
    return names


def apply_overrides(request: BenchmarkRequest, profile):
    overrides = {name: value for name, value in (("question_len", request.question_len),
                                                 ("passage_len", request.passage_len),
                                                 ("batch_sizes", request.batch_sizes)) if value is not None}
    if overrides:
        profile = dataclasses.replace(profile, **overrides)
    if request.quick and len(profile.batch_sizes) > 1:
        print(f"note: --quick measures the first batch size only ({profile.batch_sizes[0]} of "
              f"{', '.join(map(str, profile.batch_sizes))}) on {profile.device}", file=sys.stderr)
    return profile.quick() if request.quick else profile


def default_profile(request: BenchmarkRequest, device) -> str:
    """The device's default profile; for arm on a machine of another kind with --allow-emulation and no
    --target, the emulated one (its name then says what the run is)."""
    if (device.name == "arm" and request.allow_emulation and not request.target
            and platform.machine().lower() not in ARM_MACHINES):
        return "arm-emulated"
    return device.default_profile


def resolve_profiles(request: BenchmarkRequest, devices) -> dict:
    """{device name: profile}: the profile given for each device, else the device's default; a profile for a
    device not asked for, two for one device, or devices whose profiles disagree on the lengths are refused."""
    given = {}
    for name in [part.strip() for part in (request.profile or "").split(",") if part.strip()]:
        profile = load_profile(name)
        if profile.device in given:
            raise ProfileError(f"profiles {given[profile.device].name!r} and {profile.name!r} are both for device "
                               f"{profile.device!r}", "give one profile per device")
        given[profile.device] = profile
    if request.profile is not None and not given:
        raise ProfileError("--profile is empty", "name a profile, e.g. --profile server-cpu, or leave it out")
    asked = {device.name for device in devices}
    for device_name, profile in given.items():
        if device_name not in asked:
            raise ProfileError(f"profile {profile.name!r} is for device {device_name!r}, which --device "
                               f"{request.device} does not measure", f"add {device_name} to --device or pick a "
                               f"profile for {', '.join(sorted(asked))}")
    profiles = {device.name: apply_overrides(request, given.get(device.name)
                                             or load_profile(default_profile(request, device)))
                for device in devices}
    lengths = {(profile.question_len, profile.passage_len) for profile in profiles.values()}
    if len(lengths) > 1 and not request.graphs:  # a graph set's lengths are its own, whatever the profiles say
        raise ProfileError(f"the profiles {', '.join(p.name for p in profiles.values())} differ in question and "
                           "passage length; one graph set is measured on every device",
                           "give --question-len and --passage-len")
    return profiles


def device_plans(request: BenchmarkRequest, devices, profiles) -> list:
    """A DevicePlan per device; a target that cannot be made (no emulator, no ARM target) fails that device
    only, unless it is the only device asked for (then it is the command's error, before any export)."""
    if request.target and "arm" not in profiles:
        raise ConfigError("--target names the ARM machine to measure", "add arm to --device, or drop --target")
    plans = []
    for device in devices:
        profile = profiles[device.name]
        try:
            target = make_target(device, check_target_settings(profile.target, f"profile {profile.name!r}"),
                                 request.target if device.name == "arm" else None, request.allow_emulation)
        except TargetError as error:
            plans.append(DevicePlan(device, profile, error=error.message, failure=error, backend=request.backend))
            continue
        if request.backend == "torch" and target.transport != "local":
            raise ConfigError(f"--backend torch runs on this machine only, not on {target.describe()}",
                              "measure a remote target with --backend onnxruntime")
        plans.append(DevicePlan(device, profile, target, backend=request.backend, torch_source=torch_source(request)))
    return plans


def check_layers(layers) -> None:
    """The separation layers asked for, checked before any model is loaded (None: the model's default)."""
    if layers is None:
        return
    if not layers or any(not isinstance(layer, int) or isinstance(layer, bool) or layer < 0 for layer in layers):
        raise ConfigError(f"--layer {','.join(map(str, layers))} must be separation layers from 0",
                          "e.g. --layer 3,4")
    if len(set(layers)) != len(layers):
        raise ConfigError(f"--layer {','.join(map(str, layers))} names a layer more than once",
                          "give each k once, e.g. --layer 3,4")


def timing_processes(request: BenchmarkRequest) -> int:
    if request.processes is not None:
        return request.processes
    return 1 if request.quick else DEFAULT_PROCESSES


def load_source_model(request: BenchmarkRequest):
    """(label, qa_model, head_trained, source_dir, saved deformer config or None)."""
    if request.arch:
        return f"{request.arch} (random weights)", random_model(request.arch), False, None, None
    model_dir = request.model or default_model_dir()
    label = DEFAULT_MODEL_LABEL if request.model is None else model_dir.resolve().name
    _, saved = read_model_dir(model_dir)
    qa_model, head_trained = load_qa_model(model_dir)
    return label, qa_model, head_trained, model_dir, saved


def profile_variants(profiles: dict) -> list:
    """The variants the devices' profiles name (a GPU profile's float16): exported with the graph sets."""
    return sorted({profile.variant for profile in profiles.values() if profile.variant is not None})


def export_configs(request: BenchmarkRequest, profile, workdir: Path, also_export=()) -> list:
    import torch  # deferred: torch (only a benchmark that exports a model needs it)

    label, qa_model, head_trained, source_dir, saved = load_source_model(request)
    num_layers = qa_model.config.num_hidden_layers
    layers = request.layers or [saved.layer if saved else int(0.75 * num_layers)]
    offset = request.position_offset or (saved.passage_position_offset if saved else DEFAULT_POSITION_OFFSET)
    # Build (and so check) every config before the first slow export.
    deformers = []
    for layer in layers:
        config = DeformerConfig(layer=layer, question_len=profile.question_len, passage_len=profile.passage_len,
                                passage_position_offset=offset)
        deformer = Deformer(qa_model, config, qa_head_trained=head_trained)
        deformer.source_dir = source_dir
        deformers.append(deformer)
    configs = []
    for deformer in deformers:
        out = workdir / f"k{deformer.config.layer}"
        with torch.no_grad():  # here, not process-wide: a benchmark may run inside a longer process
            export_graph_set(deformer, out, progress=request.progress,
                             variants=[name for name in {*request.variants, *also_export} if name != "float32"])
        for variant in request.variants:
            graph_set = load_graph_set(out, variant)
            configs.append(BenchConfig(variant_label(label, variant), graph_set.directory, graph_set.manifest,
                                       variant, out))
    return configs


def existing_configs(request: BenchmarkRequest) -> list:
    resolved = [directory.resolve() for directory in request.graphs]
    repeated = sorted({str(path) for path in resolved if resolved.count(path) > 1})
    if repeated:
        raise ConfigError(f"--graphs names {', '.join(repeated)} more than once", "give each graph set once")
    configs = []
    for directory, label in zip(request.graphs, distinct_labels(resolved)):
        for variant in request.variants:
            graph_set = load_graph_set(directory, variant)
            configs.append(BenchConfig(variant_label(label, variant), graph_set.directory, graph_set.manifest,
                                       variant, Path(directory)))
    return configs


def distinct_labels(paths: list) -> list:
    """The report's row labels: each folder's name, or as much of its path as tells it from the others
    (two graph sets both called graphs/ become modelA/graphs and modelB/graphs)."""
    for depth in range(1, max(len(path.parts) for path in paths) + 1):
        labels = ["/".join(path.parts[-depth:]) for path in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(path) for path in paths]


def torch_source(request: BenchmarkRequest):
    """What the PyTorch backend's runner loads: the same model the graphs are exported from."""
    if request.backend != "torch":
        return None
    return ({"arch": request.arch} if request.arch
            else {"model_dir": str((request.model or default_model_dir()).resolve())})


def check_backend(request: BenchmarkRequest, devices) -> None:
    if request.backend not in BACKENDS:
        raise ConfigError(f"backend {request.backend!r} is not one of {', '.join(BACKENDS)}",
                          "use --backend onnxruntime or torch")
    if request.backend != "torch":
        return
    if request.graphs:
        raise ConfigError("--backend torch measures the PyTorch DeFormer, which a graph set does not hold",
                          "give --model or --arch (the graphs are exported from it for the functional check)")
    if any(device.name == "arm" for device in devices):
        raise ConfigError("--backend torch runs on cpu and cuda only", "measure arm with --backend onnxruntime")
    if list(request.variants) != ["float32"]:
        raise ConfigError("--variant picks ONNX graph variants; --backend torch runs the PyTorch model",
                          "drop --variant (use the profile's torch_dtype), or use --backend onnxruntime")


def check_source(request: BenchmarkRequest) -> None:
    given = [option for option, value in (("--model", request.model), ("--arch", request.arch),
                                          ("--graphs", request.graphs)) if value]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} each name what is measured", "give one of them")
    fixed = (request.layers, request.question_len, request.passage_len, request.position_offset)
    if request.graphs and any(value is not None for value in fixed):
        raise ConfigError("--layer, lengths and --position-offset are fixed by an exported graph set",
                          "drop them, or benchmark a model directory with --model")


def check_profile_variants(request: BenchmarkRequest, profiles: dict) -> None:
    naming = [profile for profile in profiles.values() if profile.variant is not None]
    if naming and list(request.variants) != ["float32"]:
        raise ConfigError(f"profile {naming[0].name} measures the {naming[0].variant} variant on its device, and "
                          f"--variant {','.join(request.variants)} names others",
                          "drop --variant, or measure them with a profile that names no variant")


def check_something_runs(plans) -> None:
    """After the preflight probe, before any export: at least one device can run; each device that cannot is
    said once (a lone device's own error, with its hint and exit code, is the command's)."""
    failed = [plan for plan in plans if plan.error]
    if any(plan.error is None and plan.skipped is None for plan in plans):
        for plan in failed:
            print(f"error: {plan.device.name}: {plan.error} (the other devices are measured)", file=sys.stderr)
        return
    if len(plans) == 1 and failed and failed[0].failure is not None:
        raise failed[0].failure
    skipped = [f"{plan.device.name}: {plan.skipped}" for plan in plans if plan.skipped]
    settings_only = all(isinstance(plan.failure, TargetError) for plan in failed)
    raise (TargetError if settings_only else RunnerError)(
        "no device can be measured: " + "; ".join([f"{plan.device.name}: {plan.error}" for plan in failed] + skipped),
        "fix the devices' targets, or measure a device this machine has (--device cpu)")


def check_something_measured(results: ResultsDocument) -> None:
    if not any(config["batches"] or (config["emulated"] and (config.get("parity") or {}).get("passed"))
               for config in results.configs):
        skipped = [f"{d['device']}: {d['reason']}" for d in results.devices if d["status"] == "skipped"]
        raise (RunnerError if results.failures else TargetError)(
            "nothing was measured: " + "; ".join(results.failures + skipped),
            "fix what failed above, or measure a device this machine has (--device cpu)")


def bench_inputs(request: BenchmarkRequest) -> dict:
    """{what: path} of everything the run reads: the model (the default MiniLM too), the graph sets, profile files."""
    graphs = request.graphs
    inputs = {"the graph set" if len(graphs) == 1 else f"graph set #{index + 1} of --graphs": path
              for index, path in enumerate(graphs)}
    if not graphs and not request.arch:
        inputs["the model directory" if request.model else "the default model directory"] = \
            request.model or default_model_dir()
    if request.served_cache is not None:
        inputs["the served passage cache"] = request.served_cache
    for name in (request.profile or "").split(","):
        if name.strip().endswith(PROFILE_SUFFIXES):
            inputs[f"the profile {name.strip()}"] = Path(name.strip())
    return inputs


def benchmark(request: BenchmarkRequest) -> BenchmarkResult:
    """Check everything, export the model's graphs (unless `graphs` are given), measure on every device and write
    the results folder under `output`. A device that fails is recorded and the others measured (see
    `BenchmarkResult.exit_code`); nothing measured at all, or bad input, raises a DeformerBenchError."""
    devices = resolve_devices(request.device)
    profiles = resolve_profiles(request, devices)
    check_layers(request.layers)
    variant_names(",".join(request.variants))  # checked before any model is loaded
    check_source(request)
    check_profile_variants(request, profiles)
    check_backend(request, devices)
    check_served_cache_request(request)
    if request.processes is not None:
        check_process_count(request.processes)
    plans = device_plans(request, devices, profiles)
    check_output_dir(request.output, "--output")  # now, not after minutes of measurement
    # the results root only gets a new folder of this run: it may hold the graph sets, not lie inside an input
    check_distinct_paths({"--output": request.output}, bench_inputs(request), roots=("--output",))
    profile = profiles[devices[0].name]  # the lengths of the graphs exported (the same in every profile)
    preflight(plans)
    check_something_runs(plans)

    machine_start = start_machine_state()  # before the export, whose own load would hide the machine's
    with scratch_directory("deformer-bench-graphs-") as workdir:
        configs = (existing_configs(request) if request.graphs
                   else export_configs(request, profile, Path(workdir), profile_variants(profiles)))
        configs = with_served_codec(request, configs)
        results = run_benchmark(configs, plans, command=list(request.command), note=request.note,
                                progress=request.progress, processes=timing_processes(request),
                                machine_start=machine_start)
        check_something_measured(results)
        directory = save_results(results, request.output, measured_models(configs), write_report)
    return BenchmarkResult(directory, results)
