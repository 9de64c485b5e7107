"""Reports drawn from saved results only: results.csv, four PNG plots and report.md."""

import json
from pathlib import Path

import pandas as pd

from .errors import DeformerBenchError

RESULTS_FILE = "results.json"
KNOWN_FORMAT_VERSIONS = (1,)
PATH_COLOURS = {"unsplit": "#7f7f7f", "online": "#1f77b4", "passage_precompute": "#ff7f0e"}
PLOTS = {
    "latency_by_path.png": "Latency (p50, bars to p90) of each path",
    "speedup_vs_ideal.png": "Measured speed-up of the online path (95% CI) against the FLOP ideal",
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


def results_frame(results: dict) -> pd.DataFrame:
    """One row per (config, batch size, path)."""
    rows = []
    for config in results["configs"]:
        for batch in config["batches"]:
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
                    "flop_ideal_speedup": config["flops"]["ideal_speedup"] if path == "online" else None,
                    "peak_rss_mb": memory["peak_rss_mb"],
                    "rss_after_load_mb": memory["rss_after_load_mb"],
                    "peak_above_load_mb": memory["peak_above_load_mb"],
                    "operator_mb_per_query": config["operator_bytes"][path] / 2**20,
                })
    return pd.DataFrame(rows)


def _figure(columns: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(5.5 * columns, 4.2), squeeze=False)
    return plt, figure, axes[0]


def _save(plt, figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
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
            axis.errorbar(rows["layer"], rows["speedup"],
                          yerr=[rows["speedup"] - rows["speedup_ci95_low"], rows["speedup_ci95_high"] - rows["speedup"]],
                          marker="o", capsize=3, label=f"{model} ({device}) batch {batch}")
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


def report_markdown(results: dict, frame: pd.DataFrame) -> str:
    environment, profile = results["environment"], results["profile"]
    cpu, packages = environment["cpu"], environment["packages"]
    lines = ["# deformer-bench report", ""]
    if results.get("note"):
        lines += [f"> {results['note']}", ""]
    lines += [
        f"- machine: {cpu['model']} ({cpu['logical_cores']} logical cores, flags {', '.join(cpu['flags']) or 'none'}),"
        f" {cpu['memory_gb']} GB, {environment['os']}, host `{environment['hostname']}`",
        f"- versions: Python {environment['python']}, " + ", ".join(f"{k} {v}" for k, v in packages.items() if v),
        f"- profile: `{profile['name']}` — {profile['intra_op_threads']} intra-op threads, "
        f"{profile['inter_op_threads']} inter-op, spinning {'on' if profile['allow_spinning'] else 'off'}, "
        f"graph optimization `{profile['graph_optimization']}`, at least {profile['min_count']} runs and "
        f"{profile['min_time_s']} s per case after warm-up",
        f"- git: `{environment['git']['commit']}`{' (uncommitted changes)' if environment['git']['dirty'] else ''}",
        f"- command: `{environment['command']}`",
        f"- recorded: {environment['recorded_at']}",
        "",
    ]
    untrained = sorted({c["label"] for c in results["configs"] if not c["model"]["qa_head_trained"]})
    if untrained:
        lines += [f"**Speed only:** the QA head of {', '.join(untrained)} is untrained (or the weights random); "
                  "these figures say nothing about accuracy.", ""]
    lines += ["## Speed-up of the DeFormer online path", "",
              "Online path = lower_question + cached passage states + upper. Paired ratio of medians, "
              "unsplit and online timed in the same interleaved rounds; 95% bootstrap CI.", ""]
    online = frame[frame["path"] == "online"][
        ["model", "device", "layer", "batch_size", "p50_ms", "speedup", "speedup_ci95_low", "speedup_ci95_high",
         "flop_ideal_speedup"]]
    unsplit = frame[frame["path"] == "unsplit"][["model", "device", "layer", "batch_size", "p50_ms"]]
    table = unsplit.rename(columns={"p50_ms": "unsplit_p50_ms"}).merge(
        online.rename(columns={"p50_ms": "online_p50_ms"}), on=["model", "device", "layer", "batch_size"])
    lines += [_markdown_table(table), ""]
    lines += ["## Memory", "",
              "Peak RSS: a fresh process that loads only that path's graphs (after load, and the peak while "
              "running). Operator bytes: the paper's metric, the sum of all operator outputs for one query.", ""]
    lines += [_markdown_table(frame[["model", "layer", "batch_size", "path", "rss_after_load_mb", "peak_rss_mb",
                                     "peak_above_load_mb", "operator_mb_per_query"]]), ""]
    lines += ["## All latencies", "", _markdown_table(frame[["model", "layer", "batch_size", "path", "p50_ms",
                                                             "p90_ms", "p99_ms", "mean_ms", "std_ms", "count",
                                                             "throughput_per_s"]]), ""]
    lines += ["## Plots", ""] + [f"![{title}]({name})\n" for name, title in PLOTS.items()]
    if results.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {warning}" for warning in results["warnings"]] + [""]
    return "\n".join(lines)


def write_report(directory) -> None:
    """results.csv, the plots and report.md beside results.json, all from the saved JSON."""
    directory = Path(directory)
    results = load_results(directory)
    frame = results_frame(results)
    frame.to_csv(directory / "results.csv", index=False)
    plot_latency(frame, directory / "latency_by_path.png")
    plot_speedup(frame, directory / "speedup_vs_ideal.png")
    plot_memory(frame, directory / "peak_memory.png")
    plot_throughput(frame, directory / "throughput_vs_batch.png")
    (directory / "report.md").write_text(report_markdown(results, frame))
