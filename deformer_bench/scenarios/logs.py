"""What LoadGen wrote, read back: its detail log (every setting, result and verdict), its trace (each sample's
latency) and its accuracy log (each sample's response). The figures of a scenario come from these files only.

    mlperf_log_summary.txt   the human summary (kept beside the report, not parsed)
    mlperf_log_detail.txt    one `:::MLLOG {json}` line per key: requested_*/effective_* settings, result_* values,
                             result_validity (VALID or INVALID) and errors (metadata.is_error)
    mlperf_log_trace.json    a Chrome trace; each sample is an async "Sample" begin event whose args hold
                             complete_ns, its latency from its scheduled time (read line by line: LoadGen writes
                             some events that are not strict JSON)
    mlperf_log_accuracy.json [{"seq_id", "qsl_idx", "data": hex of the response bytes}] (accuracy mode)
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RuntimeFailure

PREFIX = "mlperf_log_"
SUMMARY_FILE, DETAIL_FILE = f"{PREFIX}summary.txt", f"{PREFIX}detail.txt"
TRACE_FILE, ACCURACY_FILE = f"{PREFIX}trace.json", f"{PREFIX}accuracy.json"
DETAIL_MARK = ":::MLLOG "
SAMPLE_EVENT = '{"name":"Sample"'


class LoadGenLogError(RuntimeFailure):
    """LoadGen did not write what a finished test writes."""


@dataclass
class DetailLog:
    values: dict  # key -> value (the last one where a key repeats)
    errors: list = field(default_factory=list)  # "key: value" of every line LoadGen marked as an error
    warnings: list = field(default_factory=list)


def _must_exist(path: Path) -> None:
    if not path.is_file():
        raise LoadGenLogError(f"LoadGen wrote no {path.name} in {path.parent}",
                              "see its summary there; the run did not finish")


def read_detail_log(directory) -> DetailLog:
    path = Path(directory) / DETAIL_FILE
    _must_exist(path)
    log = DetailLog({})
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.startswith(DETAIL_MARK):
                continue
            try:
                entry = json.loads(line[len(DETAIL_MARK):])
            except json.JSONDecodeError:
                continue  # a line LoadGen cut (its log is written as it goes); the results come last, whole
            key, value, metadata = entry.get("key"), entry.get("value"), entry.get("metadata") or {}
            log.values[key] = value
            if metadata.get("is_error"):
                log.errors.append(f"{key}: {value}")
            elif metadata.get("is_warning"):
                log.warnings.append(f"{key}: {value}")
    return log


def read_sample_latencies(directory) -> list:
    """Every sample's latency in ns, as LoadGen measured it (scheduled -> QuerySamplesComplete), in issue order."""
    path = Path(directory) / TRACE_FILE
    _must_exist(path)
    latencies = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(SAMPLE_EVENT) and '"ph":"b"' in line:
                event = json.loads(line.rstrip().rstrip(","))
                latencies.append((event["args"]["sample_seq"], int(event["args"]["complete_ns"])))
    return [latency for _, latency in sorted(latencies)]


def read_accuracy_log(directory) -> dict:
    """{sample index: response bytes} of an accuracy run (each sample answered once)."""
    path = Path(directory) / ACCURACY_FILE
    _must_exist(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return {int(entry["qsl_idx"]): bytes.fromhex(entry["data"]) for entry in entries}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise LoadGenLogError(f"LoadGen's accuracy log {path} cannot be read: {error}",
                              "run again; LoadGen writes it whole at the end of an accuracy run") from None
