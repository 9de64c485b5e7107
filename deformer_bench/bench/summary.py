"""Figures of one (config, batch size), derived from the raw samples of its fresh timing processes (all kept).

Per process: the p50 of each path and the paired speed-up (ratio of medians over the rounds it timed).
Across processes: the median of those per-process figures and their range (`Spread`). Pooled: every
process's rounds together, for the latency percentiles and the paired bootstrap CI of the speed-up.
Format-1 results (one process, its samples at the top of the batch) are read as one process.
"""

from .runner import FLOAT32_BASELINE, STANDARD_PATHS
from .stats import UNSTABLE_SPREAD, LatencyStats, Spread, median_ratio, paired_speedup

PATHS = STANDARD_PATHS
BASELINE = "unsplit"
HEADLINE_PATH = "online"
HEADLINE_PROCESSES = 3  # fresh timing processes a headline figure needs


def process_record(index: int, timing: dict) -> dict:
    """One timing process: its raw samples and the figures drawn from them alone."""
    samples = timing["samples_ns"]
    return {
        "index": index,
        "pid": timing.get("pid"),
        "samples_ns": samples,
        "p50_ms": {path: LatencyStats(values).percentile_ms(50) for path, values in samples.items()},
        "speedup_vs_unsplit": {path: median_ratio(samples[BASELINE], values)
                               for path, values in samples.items() if path not in (BASELINE, FLOAT32_BASELINE)},
        **({"speedup_vs_float32_unsplit": {path: median_ratio(samples[FLOAT32_BASELINE], values)
                                           for path, values in samples.items() if path != FLOAT32_BASELINE}}
           if FLOAT32_BASELINE in samples else {}),
        "stopped_by_time_cap": timing.get("stopped_by_time_cap"),
        "load_s": timing.get("load_s"),
    }


def pooled_samples(processes: list) -> dict:
    """{path: every process's samples, in process order}; round i of one path still pairs with round i of another."""
    pooled = {}
    for process in processes:
        for path, values in process["samples_ns"].items():
            pooled.setdefault(path, []).extend(values)
    return pooled


def process_spreads(processes: list) -> dict:
    """{"p50_ms": {path: Spread}, "speedup_vs_unsplit": {path: Spread}} over the processes."""
    first = processes[0]
    figures = [figure for figure in ("p50_ms", "speedup_vs_unsplit", "speedup_vs_float32_unsplit") if figure in first]
    return {figure: {path: Spread(tuple(process[figure][path] for process in processes)) for path in first[figure]}
            for figure in figures}


def across_processes(processes: list) -> dict:
    spreads = process_spreads(processes)
    return {"count": len(processes),
            **{figure: {path: spread.to_dict() for path, spread in by_path.items()}
               for figure, by_path in spreads.items()}}


def with_peak_above_load(record: dict) -> dict:
    """The memory the running adds above the loaded weights; None where the peak includes loading (macOS)."""
    peak, loaded = record.get("peak_rss_mb"), record.get("rss_after_load_mb")
    fits = peak is not None and loaded is not None and record.get("peak_excludes_loading", False)
    return {**record, "peak_above_load_mb": peak - loaded if fits else None}


def batch_warnings(case: str, stats: dict, processes: list, spreads: dict) -> list:
    found = [warning for path, stat in stats.items() for warning in stat.warnings(f"{case} {path}")]
    found += [f"{case} process {process['index'] + 1}: stopped by max_time_s before min_count was reached"
              for process in processes if process["stopped_by_time_cap"]]
    found += [warning for path, spread in spreads["speedup_vs_unsplit"].items()
              for warning in spread.warnings(f"{case} {path} speed-up")]
    return found


def summarise_batch(case: str, batch: int, timings: list, memory: dict) -> dict:
    """The record of one batch size: per-process raw samples and figures, pooled figures, spreads, memory."""
    processes = [process_record(index, timing) for index, timing in enumerate(timings)]
    pooled = pooled_samples(processes)
    stats = {path: LatencyStats(values) for path, values in pooled.items()}
    spreads = process_spreads(processes)
    return {
        "batch_size": batch,
        "processes": processes,
        "latency": {path: stat.summary() for path, stat in stats.items()},
        "throughput_per_s": {path: stat.throughput(batch) for path, stat in stats.items()},
        "speedup_vs_unsplit": {path: paired_speedup(pooled[BASELINE], values).to_dict()
                               for path, values in pooled.items() if path not in (BASELINE, FLOAT32_BASELINE)},
        **({"speedup_vs_float32_unsplit": {path: paired_speedup(pooled[FLOAT32_BASELINE], values).to_dict()
                                           for path, values in pooled.items() if path != FLOAT32_BASELINE}}
           if FLOAT32_BASELINE in pooled else {}),
        "across_processes": across_processes(processes),
        "memory": {path: with_peak_above_load(record) for path, record in memory.items()},
        "warnings": batch_warnings(case, stats, processes, spreads),
    }


def batch_processes(batch: dict) -> list:
    """The timing processes of a saved batch; a format-1 batch had one, with its samples at the top."""
    if "processes" in batch:
        return batch["processes"]
    return [process_record(0, {"samples_ns": batch["samples_ns"], "load_s": batch.get("load_s")})]


def batch_across(batch: dict) -> dict:
    return batch["across_processes"] if "across_processes" in batch else across_processes(batch_processes(batch))


def headline_check(profile_name: str, processes: int, machine_state: dict, configs: list) -> dict:
    """Whether this run's figures may be quoted as headline figures, and if not, why."""
    reasons = []
    if profile_name.endswith("+quick"):
        reasons.append("--quick: a smoke test with a few samples")
    if processes < HEADLINE_PROCESSES:
        reasons.append(f"{processes} timing process(es) per case; a headline figure needs at least "
                       f"{HEADLINE_PROCESSES} (--processes)")
    if not configs:
        reasons.append("no device was timed (emulated, skipped or failed)")
    if not machine_state.get("quiet", False):
        reasons.append("the machine was not quiet (see the machine state)")
    spread = [batch for config in configs for batch in config["batches"]
              if batch_across(batch)["speedup_vs_unsplit"][HEADLINE_PATH]["max_deviation"] > UNSTABLE_SPREAD]
    if spread:
        reasons.append(f"the per-process {HEADLINE_PATH} speed-ups of {len(spread)} case(s) spread more than "
                       f"{UNSTABLE_SPREAD:.0%} around their median")
    return {"ok": not reasons, "reasons": reasons}
