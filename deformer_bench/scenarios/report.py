"""report.md, results.csv and the plots of a scenario run, drawn from its results.json only
(`write_report(DIR)` redraws them): the accuracy gate, each scenario's figures with LoadGen's verdicts, real
against fixed lengths, and three plots: latency CDF per system, QPS against p99 for the server search, F1 against
throughput (one point per system, variant and lengths mode)."""

import csv
import io
from pathlib import Path

import numpy as np

from ..contracts.readers import read_json
from ..files import save_figure_atomically, write_text_atomically
from .results import (GATE_FRACTION, REFERENCE_LABEL, ScenarioResults, accuracy_gate, csv_rows, offline_rate,
                      speedups)

RESULTS_FILE, CSV_FILE, REPORT_FILE = "results.json", "results.csv", "report.md"
PLOT_FILES = {"cdf": "latency_cdf.png", "server": "server_qps_p99.png", "f1": "f1_throughput.png"}
LINESTYLES = {"real": "-", "fixed": "--"}
MARKERS = {"real": "o", "fixed": "s"}


def load_results(directory) -> ScenarioResults:
    """results.json, read by the project's one strict JSON reader (readers.py)."""
    return ScenarioResults.from_dict(read_json(Path(directory) / RESULTS_FILE, "scenario results",
                                               hint="give a results folder written by deformer-bench --scenario"))


def _cell(value, digits: int = 2) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list, rows: list) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows] + [""]


def _verdict(result) -> str:
    if result is None:
        return ""
    reason = f" ({result.invalid_reason})" if result.verdict != "VALID" and result.invalid_reason else ""
    return f"{result.verdict}{reason}"


def _ratio(value) -> str:
    return f"{value:.2f}x" if value else ""


def header_lines(results: ScenarioResults) -> list:
    environment, profile, samples = results.environment, results.profile, results.samples
    cpu = environment["cpu"]
    lines = ["# deformer-bench scenarios: MLPerf LoadGen on SQuAD v1.1", ""]
    if results.note:
        lines += [f"> {results.note}", ""]
    if results.quick:
        lines += ["> **Functional check only (--quick):** every run is far shorter than LoadGen's minimum durations; "
                  "LoadGen labels them INVALID, and no figure here is a result.", ""]
    lines += [
        # the CPU's flags as the run read them (VNNI, bf16, AMX: what int8 and bf16 speed-ups depend on); the
        # machine changes between runs, so no prose names it
        f"- machine: {cpu['model']} ({cpu['logical_cores']} logical cores, flags {', '.join(cpu['flags']) or 'none'}), "
        f"{environment['os']}, device `{results.device}`",
        f"- profile: `{profile['name']}`: {profile['intra_op_threads']} intra-op threads, "
        f"{profile['inter_op_threads']} inter-op, spinning {'on' if profile['allow_spinning'] else 'off'}; batches "
        f"of at most {results.batching['max_batch_size']} questions, the server waiting at most "
        f"{results.batching['batch_wait_ms']:g} ms for a batch to fill",
        f"- samples: {samples['samples']:,} questions about {samples['passages']:,} passages of {samples['dataset']} "
        f"({samples['dataset_questions']:,} questions"
        + (f"; {samples['limit']:,} drawn with seed {samples['seed']}" if samples["limit"] else "") + ")",
        f"- LoadGen {results.loadgen['version']}: {results.loadgen['settings']}",
        f"- scenarios: {', '.join(results.scenarios)}; lengths: {', '.join(results.lengths)} "
        f"({results.lengths[0]} is the headline)",
        f"- git: `{environment['git']['commit']}`{' (uncommitted changes)' if environment['git']['dirty'] else ''}; "
        f"command: `{environment['command']}`; recorded {environment['recorded_at']}",
    ]
    bound = results.latency_bound
    if bound:
        lines.append(f"- server latency bound (p99): **{bound['ms']:.2f} ms**, {bound['source']}")
    return lines + [""]


def accuracy_lines(results: ScenarioResults) -> list:
    lines = ["## Accuracy (LoadGen's accuracy log, official SQuAD v1.1 metric)", "",
             f"Gate: F1 at least {GATE_FRACTION:.0%} of the {REFERENCE_LABEL} system's in the same lengths mode "
             "(MLPerf's 99% rule); each system is also shown against its own float32 parent. A system that misses "
             "the gate is listed as missing it.", ""]
    rows = []
    for run in results.runs:
        if run.accuracy is None:
            continue
        gate = accuracy_gate(results, run)
        rows.append([run.label, run.lengths, gate["f1"], run.accuracy.exact_match,
                     f"{gate['of_reference']:.1%}" if gate["of_reference"] else "", gate["gate_met"],
                     f"{gate['vs_parent']:+.2f}" if gate["vs_parent"] is not None else "",
                     f"{run.accuracy.answered}/{run.accuracy.questions}"])
    return lines + _table(["system", "lengths", "F1", "EM", f"of {REFERENCE_LABEL}", "gate 99% met",
                           "F1 vs float32 parent", "answered"], rows)


def layout_lines(results: ScenarioResults) -> list:
    if not any("f1_real_minus_fixed" in row for row in results.layout):
        return []
    rows = [[row["system"], row["f1"].get("real"), row["f1"].get("fixed"), f"{row['f1_real_minus_fixed']:+.2f}",
             row["answers_differing"]] for row in results.layout if "f1_real_minus_fixed" in row]
    return (["## Real lengths keep each model's layout", "",
             "Real lengths pad only to the longest question and window of a batch. The DeFormer's passage states "
             "keep their positions (from the cache, or lower_passage) and its upper graph takes none; the unsplit "
             "full.onnx numbers positions contiguously, so its question part stays padded to the graph set's question "
             "length. A layout that slipped would show as an F1 difference here. The float32 systems must agree to "
             "rounding; the int8 variants need not: onnxruntime's dynamic quantization scales activations per tensor, "
             "over the whole batch, so padding and the questions that share a batch move their logits.", ""]
            + _table(["system", "F1 real", "F1 fixed", "real - fixed", "answers differing"], rows))


def scenario_lines(results: ScenarioResults) -> list:
    lines = []
    runs = results.runs
    if any(run.single_stream for run in runs):
        rows = [[run.label, run.lengths, run.single_stream.latency_ms("50.00"), run.single_stream.latency_ms("90.00"),
                 run.single_stream.latency_ms("99.00"), len(run.single_stream.latencies_ns),
                 _verdict(run.single_stream)] for run in runs if run.single_stream]
        lines += ["## SingleStream: latency of one question at a time", ""] + _table(
            ["system", "lengths", "p50 ms", "p90 ms", "p99 ms", "queries", "LoadGen"], rows)
    if any(run.offline for run in runs):
        rows = []
        for run in runs:
            if run.offline:
                ratio = speedups(results, run)
                rows.append([run.label, run.lengths, offline_rate(run), run.offline.settings.get(
                    "generated_samples_per_query"), _ratio(ratio["offline_vs_unsplit_same_variant"]),
                    _ratio(ratio["offline_vs_unsplit_float32"]), _verdict(run.offline)])
        lines += ["## Offline: answered questions per second", ""] + _table(
            ["system", "lengths", "samples/s", "samples", "vs unsplit (same variant)", f"vs {REFERENCE_LABEL}",
             "LoadGen"], rows)
    if any(run.server for run in runs):
        rows = []
        for run in runs:
            if run.server:
                best, ratio = run.server.best, speedups(results, run)
                rows.append([run.label, run.lengths, run.server.best_qps if run.server.best_qps else "none",
                             best.result.latency_ms("99.00") if best else None,
                             _ratio(ratio["server_vs_unsplit_same_variant"]), len(run.server.trials),
                             _verdict(best.result) if best else "", run.server.outcome])
        lines += ["## Server: the highest QPS whose p99 stays within the bound", "",
                  "Poisson arrivals; the SUT batches dynamically. Search trials are short (LoadGen labels them "
                  "INVALID); the QPS found is then run again at the run's full durations (not with --quick).", ""]
        lines += _table(["system", "lengths", "max QPS", "p99 ms", "vs unsplit (same variant)", "runs", "LoadGen",
                         "search"], rows)
    return lines


def padding_lines(results: ScenarioResults) -> list:
    """What padding to the graph set's lengths costs each system: its figures in fixed against real lengths."""
    if set(results.lengths) != {"real", "fixed"}:
        return []
    rows = []
    for run in results.runs:
        if run.lengths != "real":
            continue
        fixed = results.run(run.label, "fixed")
        real_rate, fixed_rate = offline_rate(run), offline_rate(fixed)
        real_p90 = run.single_stream.latency_ms("90.00") if run.single_stream else None
        fixed_p90 = fixed.single_stream.latency_ms("90.00") if fixed and fixed.single_stream else None
        rows.append([run.label, real_rate, fixed_rate, _ratio(real_rate / fixed_rate if real_rate and fixed_rate
                                                              else None), real_p90, fixed_p90])
    return ["## What padding costs: real against fixed lengths", ""] + _table(
        ["system", "offline samples/s real", "fixed", "real / fixed", "SingleStream p90 ms real", "fixed"], rows)


def file_lines(results: ScenarioResults, plots: list) -> list:
    lines = ["## Files", "", f"- `{RESULTS_FILE}` (every raw value, each sample's latency), `{CSV_FILE}` (one row per "
             "system and lengths mode), the plots below; LoadGen's own `mlperf_log_summary.txt` and "
             "`mlperf_log_detail.txt` of every run (the accuracy runs' `mlperf_log_accuracy.json` too) under:"]
    for run in results.runs:
        kept = [run.accuracy.loadgen if run.accuracy else None, run.single_stream, run.offline]
        kept += [trial.result for trial in run.server.trials] if run.server else []
        folders = sorted({str(Path(result.log_dir).parent if "server" in result.log_dir else result.log_dir)
                          for result in kept if result is not None})
        lines.append(f"  - {run.label} ({run.lengths}): " + ", ".join(f"`{folder}`" for folder in folders))
    lines += ["", *[f"![{Path(file).stem}]({file})" for file in plots], ""]
    return lines


def report_markdown(results: ScenarioResults, plots: list = ()) -> str:
    lines = header_lines(results) + accuracy_lines(results) + scenario_lines(results) + padding_lines(results)
    lines += layout_lines(results) + file_lines(results, plots)
    if results.warnings:
        lines += ["## Warnings", "", *[f"- {warning}" for warning in results.warnings], ""]
    return "\n".join(lines)


def _figure(columns: int, height: float = 4.2):
    import matplotlib  # deferred: matplotlib, heavy and needed only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(6 * columns, height), squeeze=False)
    return plt, figure, axes[0]


def _colours(results: ScenarioResults) -> dict:
    labels = list(dict.fromkeys(run.label for run in results.runs))
    palette = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf"]
    return {label: palette[index % len(palette)] for index, label in enumerate(labels)}


def _save(plt, figure, path: Path) -> None:
    figure.tight_layout()
    save_figure_atomically(figure, path)
    plt.close(figure)


def _label(axis, xlabel: str, ylabel: str, title: str) -> None:
    """Every scenario plot's axis: its labels and title, a light grid, a small legend."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)


def plot_latency_cdf(results: ScenarioResults, path: Path) -> None:
    """Per scenario with per-query latencies (SingleStream; Server at the QPS found), each system's CDF."""
    panels = [("SingleStream", lambda run: run.single_stream),
              ("Server at its max QPS", lambda run: run.server.best.result if run.server and run.server.best else None)]
    panels = [(title, pick) for title, pick in panels if any(pick(run) for run in results.runs)]
    plt, figure, axes = _figure(max(1, len(panels)))
    colours = _colours(results)
    for axis, (title, pick) in zip(axes, panels):
        for run in results.runs:
            result = pick(run)
            if result is None or not result.latencies_ns:
                continue
            latencies = np.sort(np.asarray(result.latencies_ns, dtype=float)) / 1e6
            axis.plot(latencies, np.arange(1, len(latencies) + 1) / len(latencies), LINESTYLES[run.lengths],
                      color=colours[run.label], label=f"{run.label} ({run.lengths})")
        axis.set_xlim(left=0)
        _label(axis, "latency (ms, LoadGen's)", "fraction of queries", title)
    if not panels:
        axes[0].text(0.5, 0.5, "no SingleStream or Server run", ha="center")
    _save(plt, figure, path)


def plot_server_search(results: ScenarioResults, path: Path) -> None:
    plt, figure, axes = _figure(1)
    axis, colours = axes[0], _colours(results)
    for run in results.runs:
        if not run.server:
            continue
        trials = sorted(run.server.trials, key=lambda trial: trial.target_qps)
        axis.plot([t.target_qps for t in trials], [t.result.latency_ms("99.00") for t in trials],
                  LINESTYLES[run.lengths], marker=MARKERS[run.lengths], color=colours[run.label],
                  label=f"{run.label} ({run.lengths})")
    if results.latency_bound:
        axis.axhline(results.latency_bound["ms"], color="black", linewidth=1, linestyle=":", label="p99 bound")
    axis.set_yscale("log")
    _label(axis, "target QPS (Poisson)", "p99 latency (ms, LoadGen's)", "Server: QPS against p99")
    _save(plt, figure, path)


def plot_f1_throughput(results: ScenarioResults, path: Path) -> None:
    """One point per system, variant and lengths mode: F1 against Offline samples/s, the gate as a line."""
    plt, figure, axes = _figure(1, 4.8)
    axis, colours = axes[0], _colours(results)
    for run in results.runs:
        rate = offline_rate(run)
        if rate is None or run.accuracy is None:
            continue
        axis.scatter([rate], [run.accuracy.f1], color=colours[run.label], marker=MARKERS[run.lengths], s=50,
                     label=f"{run.label} ({run.lengths})")
    for lengths in results.lengths:
        reference = results.run(REFERENCE_LABEL, lengths)
        if reference and reference.accuracy:
            axis.axhline(GATE_FRACTION * reference.accuracy.f1, color="black", linewidth=1,
                         linestyle=LINESTYLES[lengths], label=f"gate: {GATE_FRACTION:.0%} of {REFERENCE_LABEL} "
                                                           f"({lengths})")
    _label(axis, "Offline throughput (answered questions/s)", "F1 (SQuAD v1.1 dev)", "F1 against throughput")
    _save(plt, figure, path)


def csv_text(results: ScenarioResults) -> str:
    rows = csv_rows(results)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def write_report(directory) -> None:
    directory = Path(directory)
    results = load_results(directory)
    drawn = {"cdf": (plot_latency_cdf, any(run.single_stream or run.server for run in results.runs)),
             "server": (plot_server_search, any(run.server for run in results.runs)),
             "f1": (plot_f1_throughput, any(run.offline for run in results.runs))}
    plots = []
    for name, (draw, has_data) in drawn.items():
        if has_data:
            draw(results, directory / PLOT_FILES[name])
            plots.append(PLOT_FILES[name])
    write_text_atomically(directory / CSV_FILE, csv_text(results))
    write_text_atomically(directory / REPORT_FILE, report_markdown(results, plots) + "\n")
