"""The report's plots, drawn from a results frame (report.results_frame) built from saved results only."""

from pathlib import Path

import pandas as pd

from .files import save_figure_atomically

PATH_COLOURS = {"unsplit": "#7f7f7f", "online": "#1f77b4", "passage_precompute": "#ff7f0e",
                "online_served": "#17becf", "online_served_codec": "#9467bd", "online_miss": "#d62728",
                "online_device_io": "#2ca02c"}


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
    device = f" {row['device']}" if "device" in row and row.get("several_devices") else ""
    return f"{row['model']}\nk={row['layer']}{device}"


def _grouped_bars(axis, subset: pd.DataFrame, column: str, upper_error: str = "") -> None:
    """One group of bars per (model, k, device), one bar per path; optional error bar up to `upper_error`."""
    cases = subset[["model", "layer", "device"]].drop_duplicates().reset_index(drop=True)
    cases["several_devices"] = cases["device"].nunique() > 1
    present = {name: colour for name, colour in PATH_COLOURS.items() if name in set(subset["path"])}
    width = 0.8 / len(present)
    for offset, (name, colour) in enumerate(present.items()):
        rows = cases.merge(subset[subset["path"] == name], on=["model", "layer", "device"], how="left")
        error = [[0] * len(rows), (rows[upper_error] - rows[column]).clip(lower=0)] if upper_error else None
        axis.bar([i + (offset - (len(present) - 1) / 2) * width for i in range(len(cases))], rows[column], width, color=colour,
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
    """Dots on a categorical axis, one category per (model, k), one series per (device, batch size): the median
    of the processes' speed-ups, a thick bar over their range, caps at the pooled 95% CI; a black dash marks
    the FLOP ideal. Works as well for one k as for five."""
    online = frame[frame["path"] == "online"]
    cases = online[["model", "layer"]].drop_duplicates().sort_values(["model", "layer"]).reset_index(drop=True)
    series = online[["device", "batch_size"]].drop_duplicates().sort_values(["device", "batch_size"])
    plt, figure, axes = _figure(1)
    axis = axes[0]
    width = 0.7 / max(len(series), 1)
    for offset, (device, batch) in enumerate(series.itertuples(index=False)):
        rows = cases.merge(online[(online["device"] == device) & (online["batch_size"] == batch)],
                           on=["model", "layer"], how="left")
        x = [i - 0.35 + width * (offset + 0.5) for i in range(len(cases))]
        median = rows["speedup_process_median"]
        line = axis.errorbar(x, median, yerr=[(median - rows["speedup_process_min"]).clip(lower=0),
                                              (rows["speedup_process_max"] - median).clip(lower=0)],
                             fmt="o", elinewidth=5, alpha=0.8, label=f"{device}, batch {batch}")
        axis.errorbar(x, median, yerr=[(median - rows["speedup_ci95_low"]).clip(lower=0),
                                       (rows["speedup_ci95_high"] - median).clip(lower=0)],
                      fmt="none", capsize=3, color=line[0].get_color())
    ideal = cases.merge(online.drop_duplicates(["model", "layer"]), on=["model", "layer"], how="left")
    axis.scatter(range(len(cases)), ideal["flop_ideal_speedup"], marker="_", s=900, color="black", zorder=3,
                 label="FLOP ideal")
    axis.axhline(1.0, color="grey", linewidth=0.8)
    axis.set_xticks(range(len(cases)))
    axis.set_xticklabels([_case_label(row) for _, row in cases.iterrows()], fontsize=7)
    axis.set_xlim(-0.6, len(cases) - 0.4)
    axis.set_ylabel("speed-up of the online path over unsplit (x)")
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
        axis.plot(rows["batch_size"], rows["throughput_per_s"], marker="o", label=f"{model} k={layer} {device} {name}",
                  **style)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("samples / s")
    axis.legend(fontsize=6)
    _save(plt, figure, path)
