"""Figures of one (config, batch size), derived from the raw samples of its fresh timing processes (all kept).

Per process: the p50 of each path and the paired speed-up (ratio of medians over the rounds it timed;
contracts.results.process_record). Across processes: the median of those per-process figures and their range
(`Spread`). Pooled: every process's rounds together, for the latency percentiles and the paired bootstrap CI of
the speed-up.
"""

from ..contracts.protocol import FLOAT32_BASELINE
from ..contracts.results import (BASELINE, HEADLINE_PATH, HEADLINE_PROCESSES, across_processes, process_record,
                                 process_spreads)
from ..contracts.stats import UNSTABLE_SPREAD, LatencyStats, paired_speedup


def pooled_samples(processes: list) -> dict:
    """{path: every process's samples, in process order}; round i of one path still pairs with round i of another."""
    pooled = {}
    for process in processes:
        for path, values in process["samples_ns"].items():
            pooled.setdefault(path, []).extend(values)
    return pooled


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
    """The record of one batch size (typed runner results in): per-process raw samples and figures, pooled
    figures, spreads, memory."""
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
        "memory": {path: with_peak_above_load(record.as_json()) for path, record in memory.items()},
        "warnings": batch_warnings(case, stats, processes, spreads),
    }


def few_processes_warning(processes: int):
    """The one line said of too few timing processes (in the headline's reasons and the run's warnings), or None
    when there are enough to know how far one process can be trusted."""
    if processes >= HEADLINE_PROCESSES:
        return None
    return (f"{processes} timing process(es) per case: too few to know how far one process can be trusted; a "
            f"headline figure needs at least {HEADLINE_PROCESSES} (--processes)")


def headline_check(profile_name: str, processes: int, machine_state: dict, configs: list) -> dict:
    """Whether this run's figures may be quoted as headline figures, and if not, why."""
    reasons = []
    if profile_name.endswith("+quick"):
        reasons.append("--quick: a smoke test with a few samples")
    if few_processes_warning(processes):
        reasons.append(few_processes_warning(processes))
    if not configs:
        reasons.append("no device was timed (emulated, skipped or failed)")
    if not machine_state.get("quiet", False):
        reasons.append("the machine was not quiet (see the machine state)")
    spread = [batch for config in configs for batch in config["batches"]
              if batch["across_processes"]["speedup_vs_unsplit"][HEADLINE_PATH]["max_deviation"] > UNSTABLE_SPREAD]
    if spread:
        reasons.append(f"the per-process {HEADLINE_PATH} speed-ups of {len(spread)} case(s) spread more than "
                       f"{UNSTABLE_SPREAD:.0%} around their median")
    return {"ok": not reasons, "reasons": reasons}
