"""Reports drawn from saved results only: results.csv, processes.csv, four PNG plots and report.md.

Format 2 results carry several timing processes per case and the machine state; format 1 results (one
timing process, no machine state) are read as one process, and the report says what they lack.
"""

import json
from pathlib import Path

import pandas as pd

from .bench.stats import UNSTABLE_SPREAD
from .bench.summary import HEADLINE_PATH, HEADLINE_PROCESSES, batch_across, batch_processes
from .errors import DeformerBenchError
from .files import save_figure_atomically, write_text_atomically

RESULTS_FILE = "results.json"
KNOWN_FORMAT_VERSIONS = (1, 2)
MAYBE_MISSING = ("peak_rss_mb", "rss_after_load_mb", "peak_above_load_mb", "load_1m_at_start")
PATH_COLOURS = {"unsplit": "#7f7f7f", "online": "#1f77b4", "passage_precompute": "#ff7f0e"}
PLOTS = {
    "latency_by_path.png": "Latency (p50, bars to p90) of each path",
    "speedup_vs_ideal.png": "Measured speed-up of the online path (median of the timing processes, bar: their "
                            "range, caps: pooled 95% CI) against the FLOP ideal",
    "peak_memory.png": "Memory: peak RSS of a fresh process, and the paper's operator bytes per query",
    "throughput_vs_batch.png": "Throughput against batch size",
}


def load_results(directory) -> dict:
    path = Path(directory) / RESULTS_FILE
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DeformerBenchError(f"cannot read {path}: {error}", "give a directory written by deformer-bench")
    if results.get("format_version") not in KNOWN_FORMAT_VERSIONS:
        raise DeformerBenchError(f"{path} has format_version {results.get('format_version')!r}",
                                 f"this version reads {KNOWN_FORMAT_VERSIONS}")
    return results


def _machine_columns(results: dict) -> dict:
    state = results.get("machine_state")
    if state is None:
        return {"machine_quiet": None, "load_1m_at_start": None}
    load = state["at_start"].get("load_average")
    return {"machine_quiet": state["quiet"], "load_1m_at_start": load[0] if load else None}


def _spread_columns(across: dict, path: str) -> dict:
    p50, speedup = across["p50_ms"][path], across["speedup_vs_unsplit"].get(path, {})
    return {"processes": across["count"], "p50_process_min_ms": p50["min"], "p50_process_max_ms": p50["max"],
            "speedup_process_median": speedup.get("median"), "speedup_process_min": speedup.get("min"),
            "speedup_process_max": speedup.get("max")}


def results_frame(results: dict) -> pd.DataFrame:
    """One row per (config, batch size, path): pooled figures, the spread across processes, memory, machine."""
    rows, machine = [], _machine_columns(results)
    for config in results["configs"]:
        for batch in config["batches"]:
            across = batch_across(batch)
            for path, latency in batch["latency"].items():
                speedup = batch["speedup_vs_unsplit"].get(path, {})
                memory = batch["memory"][path]
                rows.append({
                    "model": config["label"],
                    "device": config["device"],
                    "layer": config["deformer"]["layer"],
                    "batch_size": batch["batch_size"],
                    "path": path,
                    **latency,
                    "throughput_per_s": batch["throughput_per_s"][path],
                    "speedup": speedup.get("ratio"),
                    "speedup_ci95_low": speedup.get("ci95_low"),
                    "speedup_ci95_high": speedup.get("ci95_high"),
                    **_spread_columns(across, path),
                    "flop_ideal_speedup": config["flops"]["ideal_speedup"] if path == "online" else None,
                    "peak_rss_mb": memory.get("peak_rss_mb"),
                    "rss_after_load_mb": memory.get("rss_after_load_mb"),
                    "peak_above_load_mb": memory.get("peak_above_load_mb"),
                    "peak_excludes_loading": memory.get("peak_excludes_loading"),
                    "operator_mb_per_query": config["operator_bytes"][path] / 2**20,
                    **machine,
                })
    frame = pd.DataFrame(rows)
    for column in MAYBE_MISSING:  # None where a platform could not measure it: NaN, an empty cell, no bar
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    return frame


def processes_frame(results: dict) -> pd.DataFrame:
    """One row per (config, batch size, timing process, path): that process's p50 and paired speed-up."""
    rows = []
    for config in results["configs"]:
        for batch in config["batches"]:
            for process in batch_processes(batch):
                for path, p50 in process["p50_ms"].items():
                    rows.append({"model": config["label"], "device": config["device"],
                                 "layer": config["deformer"]["layer"], "batch_size": batch["batch_size"],
                                 "process": process["index"] + 1, "path": path, "p50_ms": p50,
                                 "speedup": process["speedup_vs_unsplit"].get(path),
                                 "count": len(process["samples_ns"][path]),
                                 "stopped_by_time_cap": process.get("stopped_by_time_cap")})
    return pd.DataFrame(rows)


def _figure(columns: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(5.5 * columns, 4.2), squeeze=False)
    return plt, figure, axes[0]


def _save(plt, figure, path: Path) -> None:
    figure.tight_layout()
    save_figure_atomically(figure, path)
    plt.close(figure)


def _case_label(row) -> str:
    return f"{row['model']}\nk={row['layer']}"


def _grouped_bars(axis, subset: pd.DataFrame, column: str, upper_error: str = "") -> None:
    """One group of bars per (model, k, device), one bar per path; optional error bar up to `upper_error`."""
    cases = subset[["model", "layer", "device"]].drop_duplicates().reset_index(drop=True)
    width = 0.8 / len(PATH_COLOURS)
    for offset, (name, colour) in enumerate(PATH_COLOURS.items()):
        rows = cases.merge(subset[subset["path"] == name], on=["model", "layer", "device"], how="left")
        error = [[0] * len(rows), (rows[upper_error] - rows[column]).clip(lower=0)] if upper_error else None
        axis.bar([i + (offset - 1) * width for i in range(len(cases))], rows[column], width, color=colour,
                 label=name, yerr=error, capsize=2)
    axis.set_xticks(range(len(cases)))
    axis.set_xticklabels([_case_label(row) for _, row in cases.iterrows()], fontsize=7)
    axis.legend(fontsize=7)


def plot_latency(frame: pd.DataFrame, path: Path) -> None:
    batches = sorted(frame["batch_size"].unique())
    plt, figure, axes = _figure(len(batches))
    for axis, batch in zip(axes, batches):
        _grouped_bars(axis, frame[frame["batch_size"] == batch], "p50_ms", upper_error="p90_ms")
        axis.set_ylabel("latency (ms)")
        axis.set_title(f"batch {batch}")
    _save(plt, figure, path)


def plot_speedup(frame: pd.DataFrame, path: Path) -> None:
    online = frame[frame["path"] == "online"]
    plt, figure, axes = _figure(1)
    axis = axes[0]
    for (model, device), group in online.groupby(["model", "device"]):
        for batch, rows in group.groupby("batch_size"):
            rows = rows.sort_values("layer")
            median = rows["speedup_process_median"]
            line = axis.errorbar(rows["layer"], median, yerr=[median - rows["speedup_process_min"],
                                                              rows["speedup_process_max"] - median],
                                 marker="o", elinewidth=5, alpha=0.8, label=f"{model} ({device}) batch {batch}")
            axis.errorbar(rows["layer"], median, yerr=[(median - rows["speedup_ci95_low"]).clip(lower=0),
                                                       (rows["speedup_ci95_high"] - median).clip(lower=0)],
                          fmt="none", capsize=3, color=line[0].get_color())
        ideal = group.drop_duplicates("layer").sort_values("layer")
        axis.plot(ideal["layer"], ideal["flop_ideal_speedup"], "k--", marker="x", label=f"{model}: FLOP ideal")
    axis.axhline(1.0, color="grey", linewidth=0.8)
    axis.set_xlabel("separation layer k")
    axis.set_ylabel("speed-up over unsplit (x)")
    axis.legend(fontsize=7)
    _save(plt, figure, path)


def plot_memory(frame: pd.DataFrame, path: Path) -> None:
    plt, figure, axes = _figure(2)
    batch = frame["batch_size"].min()
    for axis, column, title in ((axes[0], "peak_rss_mb", f"peak RSS, fresh process, batch {batch} (MB)"),
                                (axes[1], "operator_mb_per_query", "operator bytes per query (MB), paper's metric")):
        _grouped_bars(axis, frame[frame["batch_size"] == batch], column)
        axis.set_title(title, fontsize=9)
    _save(plt, figure, path)


def plot_throughput(frame: pd.DataFrame, path: Path) -> None:
    plt, figure, axes = _figure(1)
    axis = axes[0]
    for (model, layer, device, name), rows in frame.groupby(["model", "layer", "device", "path"]):
        if name == "passage_precompute":
            continue
        rows = rows.sort_values("batch_size")
        style = dict(color=PATH_COLOURS["unsplit"], alpha=0.5) if name == "unsplit" else dict()
        axis.plot(rows["batch_size"], rows["throughput_per_s"], marker="o", label=f"{model} k={layer} {name}", **style)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("samples / s")
    axis.legend(fontsize=6)
    _save(plt, figure, path)


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value):
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return ""
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _header(results: dict) -> list:
    environment, profile = results["environment"], results["profile"]
    cpu, packages = environment["cpu"], environment["packages"]
    lines = ["# deformer-bench report", ""]
    if results.get("note"):
        lines += [f"> {results['note']}", ""]
    return lines + [
        f"- machine: {cpu['model']} ({cpu['logical_cores']} logical cores, flags {', '.join(cpu['flags']) or 'none'}),"
        f" {cpu['memory_gb']} GB, {environment['os']}, host `{environment['hostname']}`",
        f"- versions: Python {environment['python']}, " + ", ".join(f"{k} {v}" for k, v in packages.items() if v),
        f"- profile: `{profile['name']}` — {profile['intra_op_threads']} intra-op threads, "
        f"{profile['inter_op_threads']} inter-op, spinning {'on' if profile['allow_spinning'] else 'off'}, "
        f"graph optimization `{profile['graph_optimization']}`, at least {profile['min_count']} runs and "
        f"{profile['min_time_s']} s per case after warm-up, in each of "
        f"{results.get('timing_processes', 1)} fresh timing process(es)",
        f"- git: `{environment['git']['commit']}`{' (uncommitted changes)' if environment['git']['dirty'] else ''}",
        f"- command: `{environment['command']}`",
        f"- recorded: {environment['recorded_at']}",
        "",
    ]


def _headline(results: dict) -> list:
    headline = results.get("headline") or {
        "ok": False, "reasons": ["results format 1: one timing process per case, machine state not recorded"]}
    if headline["ok"]:
        return [f"**Headline figures:** a quiet machine, at least {HEADLINE_PROCESSES} fresh timing processes per case, "
                f"their online speed-ups within {UNSTABLE_SPREAD:.0%} of their median.", ""]
    return ["**Not headline figures:** " + "; ".join(headline["reasons"]) + ".", ""]


def _snapshot_lines(name: str, snapshot: dict, note: str = "") -> list:
    load = snapshot.get("load_average")
    load_text = " / ".join(f"{value:.2f}" for value in load) if load else "not available"
    busy = snapshot.get("busy_processes") or []
    busy_text = ", ".join(f"{entry['name']} (pid {entry['pid']}) {entry['cpu_percent']:.0f}%" for entry in busy)
    return [f"- {name} ({snapshot.get('recorded_at', '?')}): load average 1/5/15 min {load_text}{note}; "
            f"other processes above the threshold over {snapshot.get('sample_s', '?')} s: {busy_text or 'none'}"]


def _machine_state(results: dict) -> list:
    lines = ["## Machine state", ""]
    state = results.get("machine_state")
    if state is None:
        return lines + ["Not recorded (results format 1).", ""]
    thresholds = state["thresholds"]
    lines += [f"**{'Quiet' if state['quiet'] else 'Not quiet'}** — judged by: 1-min load average at the start at "
              f"most {thresholds['load_per_core']} x {state['logical_cores']} logical cores, no other process above "
              f"{thresholds['busy_cpu_percent']:.0f}% of a core at the start or the end.", ""]
    lines += _snapshot_lines("start", state["at_start"])
    lines += _snapshot_lines("end", state["at_end"], " (includes this benchmark's own runs)")
    return lines + [""]


def _range(low, high) -> str:
    return f"{low:.2f}..{high:.2f}"


def speedup_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per case: per-path p50 (pooled) with the per-process range, the speed-up three ways, the ideal."""
    keys = ["model", "device", "layer", "batch_size"]
    paths = {name: frame[frame["path"] == name].set_index(keys) for name in ("unsplit", HEADLINE_PATH)}
    online = paths[HEADLINE_PATH]
    table = pd.DataFrame(index=online.index)
    table["processes"] = online["processes"]
    for name, rows in paths.items():
        table[f"{name}_p50_ms"] = rows["p50_ms"]
        table[f"{name}_p50_range_ms"] = [_range(*pair) for pair in zip(rows["p50_process_min_ms"],
                                                                       rows["p50_process_max_ms"])]
    table["speedup"] = online["speedup_process_median"]
    table["speedup_range"] = [_range(*pair) for pair in zip(online["speedup_process_min"],
                                                            online["speedup_process_max"])]
    table["pooled_speedup_ci95"] = [f"{ratio:.2f} [{low:.2f}, {high:.2f}]" for ratio, low, high in
                                    zip(online["speedup"], online["speedup_ci95_low"], online["speedup_ci95_high"])]
    table["flop_ideal_speedup"] = online["flop_ideal_speedup"]
    return table.reset_index()


def process_table(processes: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, timing process): each path's p50 and the online speed-up of that process alone."""
    keys = ["model", "device", "layer", "batch_size", "process"]
    table = processes.pivot_table(index=keys, columns="path", values="p50_ms", aggfunc="first")
    table = table[[name for name in PATH_COLOURS if name in table.columns]]
    table.columns = [f"{name}_p50_ms" for name in table.columns]
    online = processes[processes["path"] == HEADLINE_PATH].set_index(keys)
    table[f"{HEADLINE_PATH}_speedup"] = online["speedup"]
    table["rounds"] = online["count"]
    return table.reset_index()


def report_markdown(results: dict, frame: pd.DataFrame, processes: pd.DataFrame) -> str:
    lines = _header(results) + _headline(results)
    untrained = sorted({c["label"] for c in results["configs"] if not c["model"]["qa_head_trained"]})
    if untrained:
        lines += [f"**Speed only:** the QA head of {', '.join(untrained)} is untrained (or the weights random); "
                  "these figures say nothing about accuracy.", ""]
    lines += ["## Speed-up of the DeFormer online path", "",
              "Online path = lower_question + cached passage states + upper. Each fresh timing process times "
              "unsplit and online in the same interleaved rounds; its speed-up is the paired ratio of medians. "
              "`speedup`: the median of the processes' speed-ups, `speedup_range`: their min..max; "
              "`*_p50_ms`: p50 of all processes' samples pooled, `*_p50_range_ms`: min..max of the per-process "
              "p50s; `pooled_speedup_ci95`: the paired ratio over all rounds pooled, with its 95% bootstrap CI.", ""]
    lines += [_markdown_table(speedup_table(frame)), ""]
    lines += ["### Per timing process", "", _markdown_table(process_table(processes)), ""]
    lines += _machine_state(results)
    lines += ["## Memory", "",
              "Peak RSS: a fresh process that loads only that path's graphs (after load, and the peak while "
              "running). Operator bytes: the paper's metric, the sum of all operator outputs for one query.", ""]
    if not frame["peak_excludes_loading"].fillna(False).astype(bool).all():
        lines += ["Where `peak_excludes_loading` is not true (macOS, or no /proc/self/clear_refs), the peak is the "
                  "process's lifetime peak, loading included, and `peak_above_load_mb` is left empty.", ""]
    lines += [_markdown_table(frame[["model", "layer", "batch_size", "path", "rss_after_load_mb", "peak_rss_mb",
                                     "peak_above_load_mb", "peak_excludes_loading", "operator_mb_per_query"]]), ""]
    lines += ["## All latencies", "", "Percentiles of all timing processes' samples pooled.", "",
              _markdown_table(frame[["model", "layer", "batch_size", "path", "p50_ms", "p90_ms", "p99_ms",
                                     "mean_ms", "std_ms", "count", "throughput_per_s"]]), ""]
    lines += ["## Plots", ""] + [f"![{title}]({name})\n" for name, title in PLOTS.items()]
    if results.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {warning}" for warning in results["warnings"]] + [""]
    return "\n".join(lines)


def write_report(directory) -> None:
    """results.csv, processes.csv, the plots and report.md beside results.json, all from the saved JSON."""
    directory = Path(directory)
    results = load_results(directory)
    frame, processes = results_frame(results), processes_frame(results)
    write_text_atomically(directory / "results.csv", frame.to_csv(index=False))
    write_text_atomically(directory / "processes.csv", processes.to_csv(index=False))
    plot_latency(frame, directory / "latency_by_path.png")
    plot_speedup(frame, directory / "speedup_vs_ideal.png")
    plot_memory(frame, directory / "peak_memory.png")
    plot_throughput(frame, directory / "throughput_vs_batch.png")
    write_text_atomically(directory / "report.md", report_markdown(results, frame, processes))
