"""How busy the machine was around a benchmark: load averages and the other processes using the CPU.

Taken on the host, before the first export or measurement and after the last one (the runner itself
imports no psutil). A headline figure needs a quiet machine; a busy one is recorded and warned about.
The load average at the end includes the benchmark's own runner processes, so only the start is judged
on load; other busy processes are judged at both ends.
"""

import datetime
import os
import time

QUIET_LOAD_PER_CORE = 0.5  # 1-min load average per logical core above which the machine is not quiet
BUSY_CPU_PERCENT = 10.0  # another process above this share of one core over the sample is busy
SAMPLE_S = 0.5  # how long the other processes' CPU use is sampled


def load_average():
    """[1, 5, 15-minute] load averages, or None where the platform has none (Windows)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def own_pids(psutil) -> set:
    """This process and its children (runner processes, an exporter): the work being measured, not noise."""
    me = psutil.Process()
    try:
        return {me.pid} | {child.pid for child in me.children(recursive=True)}
    except psutil.Error:
        return {me.pid}


def busy_processes(sample_s: float = SAMPLE_S, threshold: float = BUSY_CPU_PERCENT, sleep=time.sleep,
                   process_iter=None, exclude=None) -> list:
    """Other processes above `threshold` % of one core over `sample_s`, busiest first: [{pid, name, cpu_percent}]."""
    import psutil

    exclude = own_pids(psutil) if exclude is None else exclude
    watched = []
    for process in (process_iter or psutil.process_iter)(["pid", "name"]):
        if process.pid in exclude:
            continue
        try:
            process.cpu_percent(None)  # starts the sample; the first call always says 0
            watched.append(process)
        except psutil.Error:
            continue
    sleep(sample_s)
    busy = []
    for process in watched:
        try:
            percent = process.cpu_percent(None)
        except psutil.Error:  # ended or hidden meanwhile
            continue
        if percent > threshold:
            busy.append({"pid": process.pid, "name": process.info.get("name") or "?", "cpu_percent": round(percent, 1)})
    return sorted(busy, key=lambda entry: -entry["cpu_percent"])


def snapshot(sample_s: float = SAMPLE_S, **sampling) -> dict:
    """The machine now: load averages and the other busy processes."""
    return {
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": load_average(),
        "busy_processes": busy_processes(sample_s, **sampling),
        "sample_s": sample_s,
    }


def _busy_text(busy: list) -> str:
    return ", ".join(f"{entry['name']} (pid {entry['pid']}) {entry['cpu_percent']:.0f}% CPU" for entry in busy[:5])


def state_warnings(start: dict, end: dict, cores: int) -> list:
    """Why the machine was not quiet: load before the run, other busy processes at either end."""
    found = []
    load = start.get("load_average")
    if load is not None and load[0] > QUIET_LOAD_PER_CORE * cores:
        found.append(f"machine not quiet at the start: 1-min load average {load[0]:.2f} on {cores} logical cores "
                     f"(above {QUIET_LOAD_PER_CORE} per core); headline figures need a quiet machine")
    for moment, state in (("at the start", start), ("at the end", end)):
        if state and state.get("busy_processes"):
            found.append(f"machine not quiet {moment}: other processes used the CPU: "
                         f"{_busy_text(state['busy_processes'])}")
    return found


def machine_state_record(start: dict, end: dict, cores: int = None) -> dict:
    """What results.json keeps: both snapshots, the thresholds they were judged by, and the verdict."""
    cores = cores or os.cpu_count() or 1
    warnings = state_warnings(start, end, cores)
    return {
        "logical_cores": cores,
        "thresholds": {"load_per_core": QUIET_LOAD_PER_CORE, "busy_cpu_percent": BUSY_CPU_PERCENT},
        "at_start": start,
        "at_end": end,
        "quiet": not warnings,
        "warnings": warnings,
    }
