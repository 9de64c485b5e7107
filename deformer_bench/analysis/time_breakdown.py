"""Where the online path's time goes: each graph's share of the time against its share of the FLOPs.

The FLOP ideal assumes every graph runs at the same arithmetic throughput. It does not: lower_question works on
27 tokens, where matrix products are thin and fixed costs (a session call, layer norms, reshapes) weigh more.
This study times each graph of a graph set alone, in the same interleaved rounds (no profiler: the figures
the shares are built from), then runs each graph again under onnxruntime's profiler for the split of its time by
operator type and the part spent outside kernels. Every repetition runs in a fresh process; the raw samples
are kept.

    python -m deformer_bench.analysis.time_breakdown GRAPHS_DIR [--variant optimized] [--profile server-cpu] \
        [--batch 1] [--processes 3] --out results/time-breakdown/<name>

Output: time_breakdown.json (samples, per-op-type times, FLOPs), time_breakdown.md (the tables) and
time_breakdown.png (time share against FLOP share; arithmetic throughput per graph).
"""

import argparse
import json
import multiprocessing
import sys
import tempfile
from pathlib import Path

from ..bench.flops import layer_flops
from ..errors import OutputExistsError
from ..files import check_distinct_paths, staged_directory
from ..profiles import MAX_REPEATS, MAX_TIMED_SECONDS, PROFILE_SUFFIXES
from ..readers import read_json

RESULTS_FILE = "time_breakdown.json"
FORMAT_VERSION = 1
TIMED_GRAPHS = ("full", "lower_question", "upper", "lower_passage")
ONLINE_GRAPHS = ("lower_question", "upper")


def graph_flops(manifest: dict, batch: int) -> dict:
    """FLOPs of one call of each graph (layer_flops: projections, FFN and attention; the QA head is noise)."""
    model, deformer = manifest["model"], manifest["deformer"]
    layers, k = model["num_layers"], deformer["layer"]
    question, passage = deformer["question_len"], deformer["passage_len"]
    per_layer = lambda tokens: layer_flops(tokens, model["hidden_size"], model["intermediate_size"])  # noqa: E731
    return {"full": batch * layers * per_layer(question + passage),
            "lower_question": batch * k * per_layer(question),
            "upper": batch * (layers - k) * per_layer(question + passage),
            "lower_passage": batch * k * per_layer(passage)}


def graph_inputs(job: dict) -> dict:
    """{graph: feed} for one batch of full-length inputs; upper's hidden states come from the lower graphs."""
    from ..bench.runner import make_inputs
    from ..runtime.contract import GRAPHS
    from ..runtime.sessions import GraphSetSessions

    inputs = make_inputs(job)
    lower = GraphSetSessions(job["graphs_dir"], ("lower_question", "lower_passage"), settings=job["session"])
    inputs["question_hidden"] = lower.run("lower_question", inputs)[0]
    inputs["passage_hidden"] = lower.run("lower_passage", inputs)[0]
    return {graph: {name: inputs[name] for name in GRAPHS[graph].inputs} for graph in TIMED_GRAPHS}


def kernel_times(trace: list, warmup_runs: int) -> dict:
    """From an onnxruntime profile: {"runs", "run_us", "kernel_us", "by_op_type": {op: us}} over the runs after
    the first `warmup_runs` (node events are assigned to the model_run that contains them)."""
    runs = sorted((event for event in trace if event.get("cat") == "Session" and event.get("name") == "model_run"),
                  key=lambda event: event["ts"])[warmup_runs:]
    if not runs:
        return {"runs": 0, "run_us": 0.0, "kernel_us": 0.0, "by_op_type": {}}
    first = runs[0]["ts"]
    by_op_type, kernel_us = {}, 0.0
    for event in trace:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < first:
            continue
        op_type = event.get("args", {}).get("op_name", "?")
        by_op_type[op_type] = by_op_type.get(op_type, 0.0) + event["dur"]
        kernel_us += event["dur"]
    return {"runs": len(runs), "run_us": float(sum(event["dur"] for event in runs)), "kernel_us": kernel_us,
            "by_op_type": by_op_type}


def measure_process(job: dict) -> dict:
    """One fresh process: every graph timed alone in interleaved rounds, then once more under the profiler."""
    import onnxruntime

    from ..bench.runner import interleave
    from ..runtime.sessions import GraphSetSessions, graph_path, open_session

    feeds = graph_inputs(job)
    graph_set = GraphSetSessions(job["graphs_dir"], TIMED_GRAPHS, settings=job["session"])
    calls = {graph: (lambda graph=graph: graph_set.sessions[graph].run(None, feeds[graph])) for graph in TIMED_GRAPHS}
    calls["online"] = lambda: graph_set.online(feeds["lower_question"]["question_input_ids"],
                                               feeds["lower_question"]["question_attention_mask"],
                                               feeds["upper"]["passage_hidden"],
                                               feeds["upper"]["passage_attention_mask"])
    interleave(calls, job["warmup_runs"], 0.0, job["max_time_s"])
    samples, capped = interleave(calls, job["runs"], job["min_time_s"], job["max_time_s"])
    profiled = {}
    with tempfile.TemporaryDirectory() as scratch:
        for graph in TIMED_GRAPHS:
            session = open_session(graph_path(job["graphs_dir"], graph), job["session"], str(Path(scratch) / graph))
            for _ in range(job["warmup_runs"] + job["profiled_runs"]):
                session.run(None, feeds[graph])
            trace = read_json(session.end_profiling(), "onnxruntime profile")
            profiled[graph] = kernel_times(trace, job["warmup_runs"])
    return {"samples_ns": samples, "stopped_by_time_cap": capped, "profiled": profiled,
            "onnxruntime": onnxruntime.__version__}


def run_study(graphs_dir: Path, variant: str, profile_name: str, batch: int, processes: int, runs: int,
              profiled_runs: int, min_time_s: float = None) -> dict:
    from exporters.manifest import load_graph_set

    from ..bench.devices import DEVICES
    from ..bench.plan import session_settings
    from ..profiles import load_profile

    graph_set = load_graph_set(graphs_dir, variant)
    profile = load_profile(profile_name)
    manifest, deformer = graph_set.manifest, graph_set.manifest["deformer"]
    job = {"graphs_dir": str(graph_set.directory), "batch_size": batch, "question_len": deformer["question_len"],
           "passage_len": deformer["passage_len"], "passage_token_type": deformer["passage_token_type"],
           "vocab_size": manifest["model"]["vocab_size"], "seed": profile.seed,
           "session": session_settings(DEVICES["cpu"], profile), "warmup_runs": profile.warmup_min_count,
           "runs": runs, "min_time_s": profile.min_time_s if min_time_s is None else min_time_s, "max_time_s": profile.max_time_s,
           "profiled_runs": profiled_runs}
    from tqdm import tqdm

    context = multiprocessing.get_context("spawn")  # a fresh interpreter per repetition
    measured = []
    for _ in tqdm(range(processes), desc="time breakdown", unit="process"):
        with context.Pool(1) as pool:
            measured.append(pool.apply(measure_process, (job,)))
    return {"format_version": FORMAT_VERSION, "graphs_dir": str(graphs_dir), "variant": graph_set.variant,
            "profile": profile.to_dict(), "batch_size": batch, "model": manifest["model"], "deformer": deformer,
            "flops": graph_flops(manifest, batch), "processes": measured}


def summarise(result: dict) -> dict:
    """Per graph: p50 (median over processes of each process's p50), share of the online path's graph time and
    of its FLOPs, GFLOP/s; per graph from the profiler: time outside kernels and the top operator types."""
    import numpy as np

    flops = result["flops"]
    p50_ms = {name: float(np.median([np.median(process["samples_ns"][name]) for process in result["processes"]]))
              / 1e6 for name in (*TIMED_GRAPHS, "online")}
    online_graphs_ms = sum(p50_ms[graph] for graph in ONLINE_GRAPHS)
    online_flops = sum(flops[graph] for graph in ONLINE_GRAPHS)
    graphs = {}
    for graph in TIMED_GRAPHS:
        profiled = [process["profiled"][graph] for process in result["processes"]]
        run_us, kernel_us = sum(p["run_us"] for p in profiled), sum(p["kernel_us"] for p in profiled)
        by_op = {}
        for p in profiled:
            for op_type, us in p["by_op_type"].items():
                by_op[op_type] = by_op.get(op_type, 0.0) + us
        graphs[graph] = {
            "p50_ms": p50_ms[graph], "gflop": flops[graph] / 1e9, "gflop_per_s": flops[graph] / 1e9 / (p50_ms[graph] / 1e3),
            "online_time_share": p50_ms[graph] / online_graphs_ms if graph in ONLINE_GRAPHS else None,
            "online_flop_share": flops[graph] / online_flops if graph in ONLINE_GRAPHS else None,
            "outside_kernels_share": 1 - kernel_us / run_us if run_us else None,
            "op_type_share": {op: us / kernel_us for op, us in sorted(by_op.items(), key=lambda item: -item[1])}
            if kernel_us else {},
        }
    return {"p50_ms": p50_ms, "graphs": graphs,
            "online_call_overhead_ms": p50_ms["online"] - online_graphs_ms,
            "measured_speedup": p50_ms["full"] / p50_ms["online"],
            "flop_ideal_speedup": flops["full"] / online_flops,
            "lower_question_throughput_vs_upper": graphs["lower_question"]["gflop_per_s"] / graphs["upper"]["gflop_per_s"]}


def markdown(result: dict, summary: dict) -> str:
    environment = result.get("environment", {})
    cpu = environment.get("cpu", {})
    model = result["model"]
    lines = [f"# Where the time goes: {model['architecture']} L{model['num_layers']} H{model['hidden_size']}, "
             f"k={result['deformer']['layer']} [{result['variant']}], batch {result['batch_size']}", "",
             f"Graph set: `{result['graphs_dir']}` (question {result['deformer']['question_len']} + passage "
             f"{result['deformer']['passage_len']} tokens).  ",
             f"Command: `{environment.get('command', '')}`  ",
             f"Machine: {cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} logical cores; profile "
             f"{result['profile']['name']}; onnxruntime {result['processes'][0]['onnxruntime']}; "
             f"fresh processes: {len(result['processes'])}.", "",
             f"Online path (lower_question + upper, passage states in memory): p50 {summary['p50_ms']['online']:.2f} ms; "
             f"unsplit {summary['p50_ms']['full']:.2f} ms: **{summary['measured_speedup']:.2f}x** against a FLOP "
             f"ideal of {summary['flop_ideal_speedup']:.2f}x ({summary['measured_speedup'] / summary['flop_ideal_speedup']:.0%}). "
             f"lower_question runs at **{summary['lower_question_throughput_vs_upper']:.0%}** of upper's GFLOP/s. "
             f"Calling the two graphs costs {summary['online_call_overhead_ms']:.2f} ms beyond their own times.", "",
             "| graph | p50 ms | GFLOP | GFLOP/s | share of online time | share of online FLOPs | time outside kernels "
             "| top operator types (share of kernel time) |", "|---|---|---|---|---|---|---|---|"]
    for graph, row in summary["graphs"].items():
        share = lambda value: f"{value:.1%}" if value is not None else ""  # noqa: E731
        top = ", ".join(f"{op} {fraction:.0%}" for op, fraction in list(row["op_type_share"].items())[:5])
        lines.append(f"| {graph} | {row['p50_ms']:.2f} | {row['gflop']:.2f} | {row['gflop_per_s']:.1f} | "
                     f"{share(row['online_time_share'])} | {share(row['online_flop_share'])} | "
                     f"{share(row['outside_kernels_share'])} | {top} |")
    lines += ["", "p50: the median over the processes of each process's median (graphs timed alone, in the same "
              "interleaved rounds, no profiler). Operator shares and the time outside kernels: onnxruntime's "
              "profiler, a separate pass of the same processes.", ""]
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (shares, throughput) = plt.subplots(1, 2, figsize=(10, 4))
    positions = range(len(ONLINE_GRAPHS))
    rows = [summary["graphs"][graph] for graph in ONLINE_GRAPHS]
    shares.bar([p - 0.2 for p in positions], [row["online_time_share"] for row in rows], 0.4, label="time")
    shares.bar([p + 0.2 for p in positions], [row["online_flop_share"] for row in rows], 0.4, label="FLOPs")
    shares.set_xticks(list(positions), ONLINE_GRAPHS)
    shares.set_ylabel("share of the online path")
    shares.legend()
    graphs = list(summary["graphs"])
    throughput.bar(graphs, [summary["graphs"][graph]["gflop_per_s"] for graph in graphs], color="#1f77b4")
    throughput.set_ylabel("GFLOP/s (p50)")
    throughput.set_title("arithmetic throughput per graph")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(result: dict, out_dir: Path) -> None:
    summary = summarise(result)
    with staged_directory(out_dir) as staging:
        (staging / RESULTS_FILE).write_text(json.dumps({**result, "summary": summary}, indent=1) + "\n")
        (staging / "time_breakdown.md").write_text(markdown(result, summary))
        plot(summary, staging / "time_breakdown.png")


def study_main(argv) -> int:
    from ..bench.run import MAX_PROCESSES
    from ..cli.common import int_up_to, positive_int, seconds_up_to
    from ..environment import describe_environment

    parser = argparse.ArgumentParser(prog="python -m deformer_bench.analysis.time_breakdown",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("graphs", type=Path, help="a graph set written by deformer-export")
    parser.add_argument("--variant", default="float32", help="which of its variants (default float32)")
    parser.add_argument("--profile", default="server-cpu", help="session settings (threads, ...) from this profile")
    parser.add_argument("--batch", type=positive_int, default=1)
    repeats = "more would run until killed"
    parser.add_argument("--processes", type=int_up_to(MAX_PROCESSES, repeats), default=3,
                        help=f"fresh processes (default 3, at most {MAX_PROCESSES})")
    parser.add_argument("--runs", type=int_up_to(MAX_REPEATS, repeats), default=30,
                        help="timed rounds per process (default 30)")
    parser.add_argument("--min-time-s", type=seconds_up_to(MAX_TIMED_SECONDS, repeats),
                        help="least seconds of timed rounds per process (default: the profile's min_time_s)")
    parser.add_argument("--profiled-runs", type=int_up_to(MAX_REPEATS, repeats), default=10,
                        help="profiled runs per graph (default 10)")
    parser.add_argument("--out", type=Path, required=True, help="a new directory")
    args = parser.parse_args(argv)
    if args.out.exists() or args.out.is_symlink():
        raise OutputExistsError(f"output directory {args.out} already exists", "give a new --out directory")
    check_distinct_paths({"--out": args.out}, {"the graph set": args.graphs, "the profile": Path(args.profile)
                                               if args.profile.endswith(PROFILE_SUFFIXES) else None})
    environment = describe_environment(["python", "-m", "deformer_bench.analysis.time_breakdown",
                                        *(argv if argv is not None else sys.argv[1:])])
    result = run_study(args.graphs, args.variant, args.profile, args.batch, args.processes, args.runs,
                       args.profiled_runs, args.min_time_s)
    write_outputs({**result, "environment": environment}, args.out)
    print(f"wrote {args.out}/time_breakdown.md")
    return 0


def main(argv=None) -> None:
    from ..cli.common import run_cli

    sys.exit(run_cli(study_main, argv))


if __name__ == "__main__":
    main()
