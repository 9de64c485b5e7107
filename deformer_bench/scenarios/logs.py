"""What LoadGen wrote, read back: its detail log (every setting, result and verdict), its trace (each sample's
latency) and its accuracy log (each sample's response). The figures of a scenario come from these files only.

    mlperf_log_summary.txt   the human summary (kept beside the report, not parsed)
    mlperf_log_detail.txt    one `:::MLLOG {json}` line per key: requested_*/effective_* settings, result_* values,
                             result_validity (VALID or INVALID) and errors (metadata.is_error)
    mlperf_log_trace.json    a Chrome trace; each sample is an async "Sample" begin event whose args hold
                             complete_ns, its latency from its scheduled time (read line by line: LoadGen writes
                             some events that are not strict JSON)
    mlperf_log_accuracy.json [{"seq_id", "qsl_idx", "data": hex of the response bytes}] (accuracy mode)

Every JSON value read here, a whole file or one line, goes through the project's one strict reader
(readers.py, runtime/strict_json.py): a key given twice, NaN or Infinity is refused, never read as Python's json
would (the last value kept, a NaN latency passed on to results.json).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RuntimeFailure
from ..readers import parse_json, read_json
from ..runtime import strict_json

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


RERUN = "run the test again; LoadGen writes its logs whole by the end of a test"


def _refused(path: Path, number: int, why) -> LoadGenLogError:
    return LoadGenLogError(f"LoadGen's {path.name} in {path.parent}, line {number}: {why}", RERUN)


def read_detail_log(directory) -> DetailLog:
    path = Path(directory) / DETAIL_FILE
    _must_exist(path)
    log = DetailLog({})
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.startswith(DETAIL_MARK):
                continue
            try:
                entry = strict_json.loads(line[len(DETAIL_MARK):])
            except strict_json.JSONRefused as refused:  # valid to Python's json, not JSON: never read as such
                raise _refused(path, number, refused) from None
            except json.JSONDecodeError:
                continue  # a line LoadGen cut (its log is written as it goes); the results come last, whole
            if not isinstance(entry, dict):
                raise _refused(path, number, f"a {type(entry).__name__}, where LoadGen writes an object")
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
        for number, line in enumerate(handle, 1):
            if line.startswith(SAMPLE_EVENT) and '"ph":"b"' in line:
                event = parse_json(line.rstrip().rstrip(","), f"LoadGen's {path.name} in {path.parent}, line "
                                   f"{number}", LoadGenLogError, RERUN)
                try:
                    sample, latency = event["args"]["sample_seq"], event["args"]["complete_ns"]
                except (KeyError, TypeError):
                    raise _refused(path, number, "a Sample event without args.sample_seq and args.complete_ns") \
                        from None
                if not all(isinstance(value, int) and not isinstance(value, bool) for value in (sample, latency)):
                    raise _refused(path, number, f"sample_seq {sample!r} and complete_ns {latency!r} are not "
                                                 "whole numbers")
                latencies.append((sample, latency))
    return [latency for _, latency in sorted(latencies)]


def read_accuracy_log(directory) -> dict:
    """{sample index: response bytes} of an accuracy run (each sample answered once)."""
    path = Path(directory) / ACCURACY_FILE
    _must_exist(path)
    entries = read_json(path, "LoadGen's accuracy log", LoadGenLogError, RERUN)
    try:
        return {int(entry["qsl_idx"]): bytes.fromhex(entry["data"]) for entry in entries}
    except (KeyError, TypeError, ValueError) as error:
        raise LoadGenLogError(f"LoadGen's accuracy log {path} cannot be read: {error!r}", RERUN) from None
