"""`deformer-bench --scenario ...`: the options the scenarios (deformer_bench.scenarios) add, and their checks.

Every option is checked, and every input read (dataset, graph sets, passage caches), before LoadGen's first test;
an option of the graph-level benchmark that a scenario run does not take is refused rather than ignored.
"""

import dataclasses
import platform
import sys
from pathlib import Path

from ..api.benchmarking import variant_names
from ..bench.devices import ARM_MACHINES, resolve_devices
from ..contracts.errors import ConfigError, DeviceError, ManifestError, PassageCacheError, ProfileError
from ..profiles import load_profile
from ..scenarios.run import (MAX_DURATION_S, MAX_LATENCY_BOUND_MS, SCENARIOS, ScenarioRequest, cache_build_command,
                             run_scenarios)
from ..scenarios.samples import MAX_SAMPLES, MAX_SEED
from ..scenarios.systems import DOC_STRIDE, KINDS, LENGTH_MODES, SystemSpec
from .common import int_up_to, number_up_to, parse_int_list

DEFAULT_GRAPHS = {"unsplit": Path("build/reference-graphs/teacher"),  # make scenario-graphs writes them
                  "deformer": Path("build/reference-graphs/k3-kd-lrs")}
DEFAULT_CACHE_ROOT = Path("build/scenario-caches")  # make scenario-caches: <deformer graphs>-<variant>
DEFAULT_VARIANTS = "float32,int8-arm64"  # float32 and per-channel int8 (deformer-export --quantize int8-arm64)
DEFAULT_SYSTEMS = "unsplit,deformer"
DEFAULT_OUTPUT = Path("results/scenarios")
# The graph-level benchmark's options a scenario run does not take (its graph sets fix what they set).
GRAPH_LEVEL_OPTIONS = {"model": "--model", "arch": "--arch", "graphs": "--graphs", "layer": "--layer",
                       "question_len": "--question-len", "passage_len": "--passage-len", "processes": "--processes",
                       "position_offset": "--position-offset", "target": "--target",
                       "allow_emulation": "--allow-emulation"}
SCENARIO_OPTIONS = {"dataset": "--dataset", "limit": "--limit", "seed": "--seed", "systems": "--systems",
                    "unsplit_graphs": "--unsplit-graphs", "deformer_graphs": "--deformer-graphs",
                    "passage_cache": "--passage-cache", "lengths": "--lengths",
                    "latency_bound_ms": "--latency-bound-ms", "max_duration_s": "--max-duration-s",
                    "doc_stride": "--doc-stride"}


def add_scenario_arguments(parser) -> None:
    group = parser.add_argument_group(
        "scenarios", "MLPerf LoadGen scenarios on real SQuAD questions (pip install 'deformer-bench[scenarios]'); "
                     "--scenario turns them on")
    group.add_argument("--scenario", help="comma-separated: single-stream (p90 latency), server (the highest QPS "
                                          "whose p99 stays within a bound), offline (samples/s)")
    group.add_argument("--dataset", type=Path, help="SQuAD v1.1 .json[.gz], e.g. the dev set deformer-eval reads")
    group.add_argument("--limit", type=int_up_to(MAX_SAMPLES, "LoadGen holds every sample in memory"),
                       help=f"this many questions, drawn with --seed (default: all; at most {MAX_SAMPLES:,})")
    group.add_argument("--seed", type=int_up_to(MAX_SEED, "a seed is 32 bits", minimum=0),
                       help="the draw of --limit questions (default 0; 0 to 2^32-1)")
    group.add_argument("--systems", help=f"comma-separated, of {', '.join(KINDS)} (default {DEFAULT_SYSTEMS}); each "
                                         "in every --variant; unsplit float32 is always run (the accuracy gate's "
                                         "reference, and the default server bound's)")
    group.add_argument("--unsplit-graphs", type=Path,
                       help=f"graph set of the unsplit system (its full.onnx; default {DEFAULT_GRAPHS['unsplit']}, "
                            "the shipped teacher: make scenario-graphs)")
    group.add_argument("--deformer-graphs", type=Path,
                       help=f"graph set of the deformer systems (default {DEFAULT_GRAPHS['deformer']}, the shipped "
                            "k=3 student: make scenario-graphs)")
    group.add_argument("--passage-cache", type=Path, nargs="+",
                       help="passage caches built by deformer-cache build (with --variant) for the deformer system, "
                            "one per variant, matched by the lower_passage graph they were built with (default: "
                            f"{DEFAULT_CACHE_ROOT}/<deformer graphs>-<variant>: make scenario-caches)")
    group.add_argument("--doc-stride", type=int,
                       help="overlap of a passage's consecutive windows, as the passage caches were built "
                            "(default 128)")
    group.add_argument("--lengths", help="comma-separated: real (pad to the longest in a batch) and fixed (the graph "
                                         "set's lengths); default real,fixed (real is the headline)")
    group.add_argument("--latency-bound-ms",
                       type=number_up_to(MAX_LATENCY_BOUND_MS, "milliseconds", "LoadGen takes the bound in whole ns; a "
                                         "p99 past an hour bounds nothing", above_zero=True),
                       help="the server's p99 bound (default: 3x the unsplit float32 SingleStream p90, measured in "
                            "this run; at most an hour)")
    group.add_argument("--max-duration-s",
                       type=number_up_to(MAX_DURATION_S, "seconds", "a cap past a day would not end a run in time",
                                         above_zero=True),
                       help="cap SingleStream and Server runs, and size Offline's one query to last about as "
                            "long, never under one pass over the samples (LoadGen labels runs below its 600 s "
                            "minimum INVALID; at most a day)")


def scenario_mode(args) -> bool:
    """True with --scenario; scenario options without it are refused."""
    if args.scenario is not None:
        return True
    given = [option for name, option in SCENARIO_OPTIONS.items() if getattr(args, name) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} belong to the scenarios", "add --scenario single-stream,server,offline "
                                                                         "(or some of them), or drop them")
    return False


def comma_list(text: str, allowed: tuple, option: str) -> list:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(f"{option} {text!r} is not a list of distinct names of: {', '.join(allowed)}",
                          f"e.g. {option} {','.join(allowed[:2])}")
    return names


def check_graph_level_options(args) -> None:
    given = [option for name, option in GRAPH_LEVEL_OPTIONS.items() if getattr(args, name) not in (None, False)]
    if args.backend != "onnxruntime":
        given.append("--backend torch")
    if given:
        hint = "drop them: the graph sets (--unsplit-graphs, --deformer-graphs) fix the model, k and lengths"
        if "--target" in given or "--allow-emulation" in given:
            hint = ("run deformer-bench --scenario on the ARM board itself, with mlcommons-loadgen built there "
                    "(README, 'Scenarios'); an emulated target gets the graph-level functional check only "
                    "(deformer-bench --device arm --allow-emulation)")
        raise ConfigError(f"{', '.join(given)} do not apply to a scenario run", hint)


def scenario_device(args):
    """The one device a scenario run measures, on this machine: cpu; cuda where onnxruntime has its CUDA provider;
    arm only on an aarch64 machine (over ssh and emulated: not supported yet)."""
    devices = resolve_devices(args.device)
    if len(devices) != 1:
        raise DeviceError(f"--device {args.device}: a scenario run measures one device", "run once per device")
    device = devices[0]
    if device.name == "cuda":
        import onnxruntime

        if device.provider not in onnxruntime.get_available_providers():
            raise DeviceError(f"onnxruntime {onnxruntime.__version__} here has no {device.provider}",
                              "install onnxruntime-gpu on a machine with an NVIDIA GPU, or use --device cpu")
    if device.name == "arm" and platform.machine().lower() not in ARM_MACHINES:
        raise DeviceError(f"--device arm: this machine is {platform.machine()}; a scenario run measures the machine "
                          "it runs on (over ssh: not supported yet)",
                          "run deformer-bench --scenario on the ARM board itself, with mlcommons-loadgen built there "
                          "from its sdist (README, 'Scenarios')")
    return device


def scenario_profile(args, device):
    names = [name.strip() for name in (args.profile or device.default_profile).split(",") if name.strip()]
    if len(names) != 1:
        raise ProfileError(f"--profile {args.profile!r}: a scenario run takes one profile", "name one")
    profile = load_profile(names[0])
    if profile.device != device.name:
        raise ProfileError(f"profile {profile.name!r} is for device {profile.device!r}, not {device.name!r}",
                           f"give a {device.name} profile, or --device {profile.device}")
    if args.batch_sizes is not None:
        profile = dataclasses.replace(profile, batch_sizes=tuple(parse_int_list(args.batch_sizes, "batch-sizes", 1)))
    return profile


def system_specs(args) -> list:
    """Every system asked for in every variant (float32 always: every variant's parent), the unsplit float32 system
    first: it is always run."""
    kinds = comma_list(args.systems or DEFAULT_SYSTEMS, KINDS, "--systems")
    variants = variant_names(args.variant)
    variants = ["float32", *[name for name in variants if name != "float32"]]
    given = {"unsplit": args.unsplit_graphs, "deformer": args.deformer_graphs}
    graphs = {}
    for kind in {"unsplit", *("deformer" for kind in kinds if kind.startswith("deformer"))}:
        graphs[kind] = given[kind] or DEFAULT_GRAPHS[kind]
        if given[kind] is None and not (DEFAULT_GRAPHS[kind] / "manifest.json").is_file():
            raise ManifestError(f"the default {kind} graph set {DEFAULT_GRAPHS[kind]} is not there",
                                "make scenario-graphs (exports the shipped reference models there), or give "
                                f"--{kind}-graphs DIR")
    reference = SystemSpec("unsplit", graphs["unsplit"], "float32")
    specs = [SystemSpec(kind, graphs["deformer" if kind.startswith("deformer") else "unsplit"], variant)
             for kind in kinds for variant in variants]
    return [reference, *[spec for spec in specs if spec != reference]]


def default_caches(args, specs: list) -> list:
    if args.passage_cache is not None:
        return list(args.passage_cache)
    directories = []
    for spec in specs:
        if spec.kind != "deformer":
            continue
        directory = DEFAULT_CACHE_ROOT / f"{spec.graphs.resolve().name}-{spec.variant}"
        if not directory.is_dir():
            raise PassageCacheError(f"no passage cache for {spec.label}: the default {directory} does not exist",
                                    "make scenario-caches, or build it ("
                                    + cache_build_command(spec, args.dataset, directory,
                                                          DOC_STRIDE if args.doc_stride is None else args.doc_stride)
                                    + "), or give --passage-cache")
        directories.append(directory)
    return directories


def scenario_main(args, argv=None) -> int:
    check_graph_level_options(args)
    if args.variant is None:
        args.variant = DEFAULT_VARIANTS
    scenarios = comma_list(args.scenario, SCENARIOS, "--scenario")
    lengths = comma_list(args.lengths or ",".join(LENGTH_MODES), LENGTH_MODES, "--lengths")
    if args.dataset is None:
        raise ConfigError("--scenario needs --dataset: the SQuAD questions to ask",
                          "e.g. --dataset ../shared/data/squad/dev-v1.1.json.gz")
    device = scenario_device(args)
    profile = scenario_profile(args, device)
    specs = system_specs(args)
    request = ScenarioRequest(
        scenarios=scenarios, systems=specs, lengths=lengths, dataset=args.dataset, profile=profile, device=device,
        output_root=args.output or DEFAULT_OUTPUT, limit=args.limit, seed=args.seed or 0,
        doc_stride=DOC_STRIDE if args.doc_stride is None else args.doc_stride,
        passage_caches=default_caches(args, specs), latency_bound_ms=args.latency_bound_ms,
        max_duration_s=args.max_duration_s, quick=args.quick, note=args.note, progress=not args.quiet,
        command=["deformer-bench", *(argv if argv is not None else sys.argv[1:])])
    directory = run_scenarios(request)
    print(f"results: {directory}/report.md")
    return 0
