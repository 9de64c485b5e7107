"""Reports drawn from saved results only: results.csv, processes.csv, four PNG plots and report.md.

The results document is read by its one reader (contracts.results), which brings every earlier format to the
current one: format 1 results (one timing process, no machine state) are read as one process, and the report
says what they lack.
"""

from pathlib import Path

import pandas as pd

from .contracts.protocol import CODEC_SERVED_PATH, MISS_PATH, SERVED_PATH
from .contracts.readers import read_json
from .contracts.results import HEADLINE_PATH, HEADLINE_PROCESSES, RESULTS_FILE, ResultsDocument, ResultsFormatError
from .contracts.stats import UNSTABLE_SPREAD
from .files import write_text_atomically
from .plots import PATH_COLOURS, plot_latency, plot_memory, plot_speedup, plot_throughput
from .report_devices import device_sections, functional_only_rows

FUNCTIONAL_ONLY = "functional only"
MAYBE_MISSING = ("peak_rss_mb", "rss_after_load_mb", "peak_above_load_mb", "load_1m_at_start")
PLOTS = {
    "latency_by_path.png": "Latency (p50, bars to p90) of each path",
    "speedup_vs_ideal.png": "Measured speed-up of the online path (median of the timing processes, bar: their "
                            "range, caps: pooled 95% CI) against the FLOP ideal",
    "peak_memory.png": "Memory: peak RSS of a fresh process, and the paper's operator bytes per query",
    "throughput_vs_batch.png": "Throughput against batch size",
}


def load_results(directory) -> ResultsDocument:
    """The results document of a results folder, of any format deformer-bench has written."""
    path = Path(directory) / RESULTS_FILE
    document = read_json(path, "benchmark results", ResultsFormatError, "give a directory written by deformer-bench")
    return ResultsDocument.from_json(document, str(path))


def _machine_columns(results: ResultsDocument) -> dict:
    state = results.machine_state
    if state is None:
        return {"machine_quiet": None, "load_1m_at_start": None}
    load = state["at_start"].get("load_average")
    return {"machine_quiet": state["quiet"], "load_1m_at_start": load[0] if load else None}


def _spread_columns(across: dict, path: str) -> dict:
    p50, speedup = across["p50_ms"][path], across["speedup_vs_unsplit"].get(path, {})
    return {"processes": across["count"], "p50_process_min_ms": p50["min"], "p50_process_max_ms": p50["max"],
            "speedup_process_median": speedup.get("median"), "speedup_process_min": speedup.get("min"),
            "speedup_process_max": speedup.get("max")}


def results_frame(results: ResultsDocument) -> pd.DataFrame:
    """One row per (config, batch size, path): pooled figures, the spread across processes, memory, machine."""
    rows, machine = [], _machine_columns(results)
    for config in results.configs:
        for batch in config["batches"]:
            across = batch["across_processes"]
            for path, latency in batch["latency"].items():
                speedup = batch["speedup_vs_unsplit"].get(path, {})
                memory = batch["memory"].get(path, {})  # the float32 baseline of a variant has no memory job
                rows.append({
                    "model": config["label"],
                    "device": config["device"],
                    "backend": config["backend"],
                    "transport": config["transport"],
                    "layer": config["deformer"]["layer"],
                    "batch_size": batch["batch_size"],
                    "path": path,
                    **latency,
                    "throughput_per_s": batch["throughput_per_s"][path],
                    "speedup": speedup.get("ratio"),
                    "speedup_ci95_low": speedup.get("ci95_low"),
                    "speedup_ci95_high": speedup.get("ci95_high"),
                    **_spread_columns(across, path),
                    "flop_ideal_speedup": config["flops"]["ideal_speedup"] if path.startswith("online") else None,
                    "speedup_vs_float32_unsplit": across.get("speedup_vs_float32_unsplit", {}).get(path, {}).get("median"),
                    "peak_rss_mb": memory.get("peak_rss_mb"),
                    "rss_after_load_mb": memory.get("rss_after_load_mb"),
                    "peak_above_load_mb": memory.get("peak_above_load_mb"),
                    "peak_excludes_loading": memory.get("peak_excludes_loading"),
                    "operator_mb_per_query": config["operator_bytes"].get(path, float("nan")) / 2**20,
                    **machine,
                })
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS) if not rows else pd.DataFrame(rows)
    for column in MAYBE_MISSING:  # None where a platform could not measure it: NaN, an empty cell, no bar
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    return frame


FRAME_COLUMNS = ["model", "device", "backend", "transport", "layer", "batch_size", "path", "p50_ms", "p90_ms",
                 "p99_ms", "mean_ms", "std_ms", "count", "throughput_per_s", "speedup", "speedup_ci95_low",
                 "speedup_ci95_high", "processes", "p50_process_min_ms", "p50_process_max_ms",
                 "speedup_process_median", "speedup_process_min", "speedup_process_max", "flop_ideal_speedup",
                 "speedup_vs_float32_unsplit",
                 "peak_rss_mb", "rss_after_load_mb", "peak_above_load_mb", "peak_excludes_loading",
                 "operator_mb_per_query", "machine_quiet", "load_1m_at_start"]


def processes_frame(results: ResultsDocument) -> pd.DataFrame:
    """One row per (config, batch size, timing process, path): that process's p50 and paired speed-up."""
    rows = []
    for config in results.configs:
        for batch in config["batches"]:
            for process in batch["processes"]:
                for path, p50 in process["p50_ms"].items():
                    rows.append({"model": config["label"], "device": config["device"],
                                 "layer": config["deformer"]["layer"], "batch_size": batch["batch_size"],
                                 "process": process["index"] + 1, "path": path, "p50_ms": p50,
                                 "speedup": process["speedup_vs_unsplit"].get(path),
                                 "count": len(process["samples_ns"][path]),
                                 "stopped_by_time_cap": process.get("stopped_by_time_cap")})
    return pd.DataFrame(rows)


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value):
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return ""
        if isinstance(value, float):  # small values (differences from a reference) keep their digits
            return f"{value:.2g}" if 0 < abs(value) < 0.01 else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _header(results: ResultsDocument) -> list:
    environment = results.environment
    cpu, packages = environment["cpu"], environment["packages"]
    lines = ["# deformer-bench report", ""]
    if results.note:
        lines += [f"> {results.note}", ""]
    return lines + [
        f"- machine: {cpu['model']} ({cpu['logical_cores']} logical cores, flags {', '.join(cpu['flags']) or 'none'}),"
        f" {cpu['memory_gb']} GB, {environment['os']}, host `{environment['hostname']}`",
        f"- versions: Python {environment['python']}, " + ", ".join(f"{k} {v}" for k, v in packages.items() if v),
        *[_profile_line(device, profile, results.timing_processes) for device, profile in results.profiles.items()],
        f"- git: `{environment['git']['commit']}`{' (uncommitted changes)' if environment['git']['dirty'] else ''}",
        f"- command: `{environment['command']}`",
        f"- recorded: {environment['recorded_at']}",
        "",
    ]


def _profile_line(device: str, profile: dict, processes: int) -> str:
    return (f"- profile ({device}): `{profile['name']}` — {profile['intra_op_threads']} intra-op threads, "
            f"{profile['inter_op_threads']} inter-op, spinning {'on' if profile['allow_spinning'] else 'off'}, "
            f"graph optimization `{profile['graph_optimization']}`, at least {profile['min_count']} runs and "
            f"{profile['min_time_s']} s per case after warm-up, in each of {processes} fresh timing process(es)")


def _headline(results: ResultsDocument) -> list:
    headline = results.headline
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


def _machine_state(results: ResultsDocument) -> list:
    lines = ["## Machine state", ""]
    state = results.machine_state
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
    served = frame[frame["path"] == SERVED_PATH].set_index(keys)
    if not served.empty:  # as served: the passage states gathered from the memory-mapped cache in every call
        table["served_speedup"] = served["speedup_process_median"]
        table["served_speedup_range"] = [_range(*pair) for pair in zip(served["speedup_process_min"],
                                                                        served["speedup_process_max"])]
    codec = frame[frame["path"] == CODEC_SERVED_PATH].set_index(keys)
    if not codec.empty:  # served from a learned codec's cache: its codes gathered and decoded in every call
        table["codec_served_speedup"] = codec["speedup_process_median"]
        table["decode_cost"] = [f"{after / before - 1:+.1%}" if pd.notna(after) and pd.notna(before) else None
                                for after, before in zip(codec["p50_ms"].reindex(table.index),
                                                         served["p50_ms"].reindex(table.index))]
    miss = frame[frame["path"] == MISS_PATH].set_index(keys)
    if not miss.empty:  # a cache miss: lower_passage computed in the call
        table["miss_speedup"] = miss["speedup_process_median"]
    if online["speedup_vs_float32_unsplit"].notna().any():  # variants: against what the user had before
        table["speedup_vs_float32_unsplit"] = online["speedup_vs_float32_unsplit"]
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


def _served_codec_lines(results: ResultsDocument) -> list:
    """What each online_served_codec served from: the cache, its codec, the bytes of a token's codes, and where its
    product ran (results before it was recorded: numpy)."""
    lines = [f"- `online_served_codec` of {config['label']} on {config['device']}: {served['codec']} "
             f"({served['code_bytes_per_token']:g} bytes of codes a token) from `{served['cache']}`"
             + ("; its product in upper's graph, the look-ups in numpy" if served.get("product") == "in upper's graph"
                else "")
             for config in results.configs if (served := config.get("served_codec"))]
    return lines + [""] if lines else []


def report_markdown(results: ResultsDocument, frame: pd.DataFrame, processes: pd.DataFrame) -> str:
    lines = _header(results) + _headline(results)
    untrained = sorted({c["label"] for c in results.configs if not c["model"]["qa_head_trained"]})
    if untrained:
        lines += [f"**Speed only:** the QA head of {', '.join(untrained)} is untrained (or the weights random); "
                  "these figures say nothing about accuracy.", ""]
    lines += ["## Speed-up of the DeFormer online path", "",
              "Online path = lower_question + cached passage states + upper. Each fresh timing process times "
              "unsplit and online in the same interleaved rounds; its speed-up is the paired ratio of medians. "
              "`speedup`: the median of the processes' speed-ups, `speedup_range`: their min..max; "
              "`*_p50_ms`: p50 of all processes' samples pooled, `*_p50_range_ms`: min..max of the per-process "
              "p50s; `pooled_speedup_ci95`: the paired ratio over all rounds pooled, with its 95% bootstrap CI. "
              "`served_speedup` (onnxruntime): the online path as served, its passage states gathered in every call "
              "from a memory-mapped cache file (`online_served`, rows spread over a file larger than the CPU's "
              "caches, its pages in the OS page cache); `online` takes them from memory. `codec_served_speedup` "
              "(deformer-bench --served-cache): the same from a passage cache stored in a learned codec, its windows' "
              "codes gathered and decoded in every call (`online_served_codec`, every position of the window decoded, "
              "as the full-length inputs take them); `decode_cost`: its p50 over `online_served`'s, what decoding "
              "adds to a served question. `miss_speedup`: a cache "
              "miss, the passage's states computed in the call (`online_miss`: lower_passage + lower_question + "
              "upper).", ""]
    speedups = pd.concat([speedup_table(frame).astype(object) if not frame.empty else None,
                          functional_only_rows(results)])
    lines += [_markdown_table(speedups.astype(object).where(speedups.notna(), None)) if not speedups.empty
              else "No device was timed.", ""]
    lines += _served_codec_lines(results)
    if not frame.empty:
        lines += ["### Per timing process", "", _markdown_table(process_table(processes)), ""]
    lines += device_sections(results, _markdown_table)
    lines += _machine_state(results)
    if frame.empty:
        return "\n".join(lines + _warnings(results))
    lines += ["## Memory", "",
              "Peak RSS: a fresh process that loads only that path's graphs (after load, and the peak while "
              "running). Operator bytes: the paper's metric, the sum of all operator outputs for one query.", ""]
    if not frame["peak_excludes_loading"].fillna(False).astype(bool).all():
        lines += ["Where `peak_excludes_loading` is not true (macOS, or no /proc/self/clear_refs), the peak is the "
                  "process's lifetime peak, loading included, and `peak_above_load_mb` is left empty.", ""]
    lines += [_markdown_table(frame[["model", "device", "layer", "batch_size", "path", "rss_after_load_mb", "peak_rss_mb",
                                     "peak_above_load_mb", "peak_excludes_loading", "operator_mb_per_query"]]), ""]
    lines += ["## All latencies", "", "Percentiles of all timing processes' samples pooled.", "",
              _markdown_table(frame[["model", "device", "backend", "layer", "batch_size", "path", "p50_ms", "p90_ms", "p99_ms",
                                     "mean_ms", "std_ms", "count", "throughput_per_s"]]), ""]
    lines += ["## Plots", ""] + [f"![{title}]({name})\n" for name, title in PLOTS.items()]
    return "\n".join(lines + _warnings(results))


def _warnings(results: ResultsDocument) -> list:
    if not results.warnings:
        return []
    return ["## Warnings", ""] + [f"- {warning}" for warning in results.warnings] + [""]


def write_report(directory) -> None:
    """results.csv, processes.csv, the plots and report.md beside results.json, all from the saved JSON."""
    directory = Path(directory)
    results = load_results(directory)
    frame, processes = results_frame(results), processes_frame(results)
    write_text_atomically(directory / "results.csv", frame.to_csv(index=False))
    write_text_atomically(directory / "processes.csv", processes.to_csv(index=False))
    if not frame.empty:  # an emulated-only run has no figure to draw
        plot_latency(frame, directory / "latency_by_path.png")
        plot_speedup(frame, directory / "speedup_vs_ideal.png")
        plot_memory(frame, directory / "peak_memory.png")
        plot_throughput(frame, directory / "throughput_vs_batch.png")
    write_text_atomically(directory / "report.md", report_markdown(results, frame, processes))
