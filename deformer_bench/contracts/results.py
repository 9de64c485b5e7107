"""The results document (results.json): what deformer-bench writes and every reader (the report, the accuracy
tables) reads, typed at the top and versioned.

One reader: `ResultsDocument.from_json` brings a document of any earlier format_version up to the current one
through the version map (UPGRADES: one step per version) and refuses an unknown version, so no reader patches an
old format inline. The document's figures are defined here too (`process_record`, `across_processes`): a
format-1 batch gets them from its samples.

    format_version     RESULTS_FORMAT_VERSION
    environment        the host that ran the benchmark (environment.describe_environment)
    profile            the profile of the first device that ran; profiles: {device: profile}
    note               a line for the top of the report
    timing_processes   fresh timing processes per (config, batch size)
    devices            per device: its plan, target, status (measured, functional, skipped, failed), reason and the
                       target's own environment (runtime.target_environment)
    configs            per (graph set, device): model, deformer, variant, backend, precision, transport, emulated,
                       flops, operator_bytes, providers, parity, failures and `batches`: per batch size its
                       `processes` (raw samples and per-process figures), pooled latency, throughput and speed-ups,
                       `across_processes` (their spread), memory per path and warnings (bench/summary.py)
    failures           what failed, one line each
    machine_state      load and other busy processes at the start and the end (bench/machine_state.py)
    headline           {ok, reasons}: whether the figures may be quoted as headline figures
    warnings           every warning of the run
"""

from dataclasses import asdict, dataclass, field, fields

from .errors import DeformerBenchError
from .protocol import FLOAT32_BASELINE, TimingResult
from .stats import LatencyStats, Spread, median_ratio

RESULTS_FILE = "results.json"
# 2: several timing processes per batch (`processes`, `across_processes`), `machine_state`, `headline`.
# 3: `devices` (target, transport, emulated, status, the target's own environment), `profiles` per device,
#    per config `backend`, `transport`, `emulated`, `providers`, `parity`, `failures`; `failures` overall.
RESULTS_FORMAT_VERSION = 3
BASELINE = "unsplit"
HEADLINE_PATH = "online"
HEADLINE_PROCESSES = 3  # fresh timing processes a headline figure needs


class ResultsFormatError(DeformerBenchError):
    """A results document of an unknown format_version or of another shape."""


def process_record(index: int, timing: TimingResult) -> dict:
    """One timing process: its raw samples and the figures drawn from them alone (the p50 of each path, the
    paired speed-up: the ratio of medians over the rounds it timed)."""
    samples = timing.samples_ns
    return {
        "index": index,
        "pid": timing.pid,
        "samples_ns": samples,
        "p50_ms": {path: LatencyStats(values).percentile_ms(50) for path, values in samples.items()},
        "speedup_vs_unsplit": {path: median_ratio(samples[BASELINE], values)
                               for path, values in samples.items() if path not in (BASELINE, FLOAT32_BASELINE)},
        **({"speedup_vs_float32_unsplit": {path: median_ratio(samples[FLOAT32_BASELINE], values)
                                           for path, values in samples.items() if path != FLOAT32_BASELINE}}
           if FLOAT32_BASELINE in samples else {}),
        "stopped_by_time_cap": timing.stopped_by_time_cap,
        "load_s": timing.load_s,
    }


def process_spreads(processes: list) -> dict:
    """{"p50_ms": {path: Spread}, "speedup_vs_unsplit": {path: Spread}, ...} over the processes."""
    first = processes[0]
    figures = [figure for figure in ("p50_ms", "speedup_vs_unsplit", "speedup_vs_float32_unsplit") if figure in first]
    return {figure: {path: Spread(tuple(process[figure][path] for process in processes)) for path in first[figure]}
            for figure in figures}


def across_processes(processes: list) -> dict:
    """The median and range of each per-process figure."""
    spreads = process_spreads(processes)
    return {"count": len(processes),
            **{figure: {path: spread.to_dict() for path, spread in by_path.items()}
               for figure, by_path in spreads.items()}}


def _from_format_1(document: dict) -> dict:
    """Format 1 had one timing process, its samples at the top of each batch, and no machine state."""
    for config in document["configs"]:
        for batch in config["batches"]:
            timing = TimingResult(samples_ns=batch["samples_ns"], load_s=batch.get("load_s"))
            batch["processes"] = [process_record(0, timing)]
            batch["across_processes"] = across_processes(batch["processes"])
    return {**document, "format_version": 2, "timing_processes": 1, "machine_state": None,
            "headline": {"ok": False,
                         "reasons": ["results format 1: one timing process per case, machine state not recorded"]}}


def _from_format_2(document: dict) -> dict:
    """Format 2 measured one device, on this machine, with onnxruntime, and recorded no device or failure."""
    profile = document["profile"]
    for config in document["configs"]:
        config.setdefault("backend", "onnxruntime")
        config.setdefault("transport", "local")
        config.setdefault("emulated", False)
        config.setdefault("parity", None)
        config.setdefault("providers", {})
        config.setdefault("failures", [])
    return {**document, "format_version": 3, "profiles": {profile["device"]: profile}, "devices": [],
            "failures": []}


# format_version -> the step that brings a document of that version to the next one.
UPGRADES = {1: _from_format_1, 2: _from_format_2}


@dataclass
class ResultsDocument:
    """A results document of the current format (see the module's docstring for each field)."""

    environment: dict
    profile: dict
    profiles: dict
    timing_processes: int
    configs: list = field(default_factory=list)
    devices: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    note: str = ""
    machine_state: dict = None
    headline: dict = None
    warnings: list = field(default_factory=list)
    format_version: int = RESULTS_FORMAT_VERSION

    def as_json(self) -> dict:
        return {"format_version": self.format_version, **{name: value for name, value in asdict(self).items()
                                                          if name != "format_version"}}

    @classmethod
    def from_json(cls, document, source: str = "results document") -> "ResultsDocument":
        """The document of any known format_version, brought to the current one; ResultsFormatError for an unknown
        version or a document of another shape."""
        hint = "give a directory written by deformer-bench"
        if not isinstance(document, dict):
            raise ResultsFormatError(f"{source} is not a deformer-bench results document (a "
                                     f"{type(document).__name__})", hint)
        version = document.get("format_version")
        if version not in (*UPGRADES, RESULTS_FORMAT_VERSION):
            raise ResultsFormatError(f"{source} has format_version {version!r}",
                                     f"this version reads {tuple(sorted({*UPGRADES, RESULTS_FORMAT_VERSION}))}")
        try:
            while document["format_version"] != RESULTS_FORMAT_VERSION:
                document = UPGRADES[document["format_version"]](document)
            known = {item.name for item in fields(cls)}
            return cls(**{name: value for name, value in document.items() if name in known})
        except (KeyError, TypeError, AttributeError) as error:
            raise ResultsFormatError(f"{source} is not a results document of format {version}: "
                                     f"{type(error).__name__} {error}", hint) from None
