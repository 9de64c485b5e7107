"""The typed results of a scenario run, built from the raw values LoadGen wrote (which are kept beside them), and
the figures derived from them in one place (the accuracy gate, the speed-ups), for the report, the CSV and the
plots alike. `ScenarioResults.to_dict()` is results.json; `ScenarioResults.from_dict()` reads it back.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from . import logs

RESULTS_FORMAT_VERSION = 1
GATE_FRACTION = 0.99  # MLPerf's "99%" accuracy target: F1 at least 99% of the float32 unsplit model's
LOADGEN_PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")
THROUGHPUT_KEYS = {  # LoadGen's result key -> ours, per scenario
    "result_samples_per_second": "samples_per_second",  # Offline
    "result_completed_samples_per_sec": "completed_samples_per_second",  # Server
    "result_scheduled_samples_per_sec": "scheduled_samples_per_second",  # Server
    "result_qps_with_loadgen_overhead": "qps_with_loadgen_overhead",  # SingleStream
    "result_qps_without_loadgen_overhead": "qps_without_loadgen_overhead",  # SingleStream
}
CONSTRAINT_KEYS = {"result_min_duration_met": "min_duration_met", "result_min_queries_met": "min_queries_met",
                   "early_stopping_met": "early_stopping_met", "result_perf_constraints_met": "perf_constraints_met"}
SETTING_KEYS = ("effective_scenario", "effective_test_mode", "effective_target_qps", "effective_target_latency_ns",
                "effective_target_latency_percentile", "effective_min_duration_ms", "effective_max_duration_ms",
                "effective_min_query_count", "effective_min_sample_count", "effective_samples_per_query",
                "effective_performance_sample_count", "requested_min_duration_ms", "requested_max_duration_ms",
                "requested_min_query_count", "generated_query_count", "generated_samples_per_query")


def _build(cls, data: dict):
    """A dataclass from its dict, ignoring keys it does not have (a newer file read by an older reader)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in data.items() if key in names})


@dataclass
class LoadGenResult:
    """One LoadGen test as LoadGen reported it."""

    scenario: str  # LoadGen's name: SingleStream, Server, Offline
    mode: str  # PerformanceOnly or AccuracyOnly
    verdict: str | None  # LoadGen's result_validity, VALID or INVALID (performance mode only)
    invalid_reason: str | None
    constraints: dict  # min_duration_met, min_queries_met, early_stopping_met, perf_constraints_met (Server)
    latency_ns: dict  # min, mean, max and LoadGen's percentiles ("90.00": ...)
    throughput: dict  # THROUGHPUT_KEYS' values this scenario has
    query_count: int | None
    settings: dict  # LoadGen's effective (and requested) settings, SETTING_KEYS
    errors: list  # lines LoadGen marked as errors (e.g. "Ending early: Max test duration reached")
    latencies_ns: list  # every sample's latency, from LoadGen's trace
    log_dir: str  # its summary and detail logs, relative to the results folder
    wall_s: float = None  # StartTest's wall time here
    sut: dict = None  # the SUT's own record: batches answered, mean and largest batch

    @classmethod
    def from_logs(cls, directory: Path, results_dir: Path, sut: dict = None) -> "LoadGenResult":
        detail = logs.read_detail_log(directory)
        values = detail.values
        performance = values.get("effective_test_mode") != "AccuracyOnly"
        latency = {key: values.get(f"result_{key}_latency_ns") for key in ("min", "mean", "max")}
        latency.update({percentile: values.get(f"result_{percentile}_percentile_latency_ns")
                        for percentile in LOADGEN_PERCENTILES})
        return cls(
            scenario=values.get("effective_scenario"), mode=values.get("effective_test_mode"),
            verdict=values.get("result_validity") if performance else None,
            invalid_reason=(values.get("result_invalid_reason") or "").strip() or None,
            constraints={ours: values[key] for key, ours in CONSTRAINT_KEYS.items() if key in values},
            latency_ns={key: value for key, value in latency.items() if value is not None},
            throughput={ours: values[key] for key, ours in THROUGHPUT_KEYS.items() if key in values},
            query_count=values.get("result_query_count"),
            settings={key: values[key] for key in SETTING_KEYS if key in values},
            errors=detail.errors,
            latencies_ns=logs.read_sample_latencies(directory) if performance else [],
            log_dir=str(Path(directory).relative_to(results_dir)),
            wall_s=(sut or {}).get("wall_s"), sut={key: value for key, value in (sut or {}).items() if key != "wall_s"})

    @classmethod
    def from_dict(cls, data):
        return None if data is None else _build(cls, data)

    def latency_ms(self, percentile: str) -> float | None:
        value = self.latency_ns.get(percentile)
        return None if value is None else value / 1e6

    @property
    def valid(self) -> bool:
        return self.verdict == "VALID"


@dataclass
class AccuracyResult:
    """LoadGen's accuracy run (every sample once, Offline), its log scored with the official SQuAD v1.1 metric."""

    f1: float
    exact_match: float
    questions: int
    answered: int  # samples LoadGen logged a response for
    empty_answers: int  # responses with no span (no window had a valid one)
    wall_s: float  # the whole accuracy run, the warm-up that sets the performance runs' expected rates
    loadgen: LoadGenResult

    @classmethod
    def from_dict(cls, data):
        if data is None:
            return None
        return _build(cls, {**data, "loadgen": LoadGenResult.from_dict(data["loadgen"])})

    @property
    def samples_per_second(self) -> float:
        return self.questions / self.wall_s if self.wall_s else None


@dataclass
class ServerTrial:
    target_qps: float
    meets_bound: bool  # LoadGen's result_perf_constraints_met: its p99 within server_target_latency_ns
    confirmation: bool  # the run at the found QPS with the run's full durations (after the shorter search trials)
    result: LoadGenResult

    @classmethod
    def from_dict(cls, data):
        return _build(cls, {**data, "result": LoadGenResult.from_dict(data["result"])})


@dataclass
class ServerSearch:
    """The highest server_target_qps whose p99 stayed within the bound, found the way submitters tune it."""

    bound_ms: float
    trials: list  # ServerTrial, in the order run
    best_qps: float | None  # None: no QPS tried met the bound (a result, not a failure)
    outcome: str  # one line: what was found, or why nothing was

    @classmethod
    def from_dict(cls, data):
        if data is None:
            return None
        return _build(cls, {**data, "trials": [ServerTrial.from_dict(trial) for trial in data["trials"]]})

    @property
    def best(self) -> ServerTrial | None:
        """The run that gives the reported QPS and p99: the confirmation where there is one, else the best trial."""
        if self.best_qps is None:
            return None
        at_best = [trial for trial in self.trials if trial.target_qps == self.best_qps and trial.meets_bound]
        confirmed = [trial for trial in at_best if trial.confirmation]
        return (confirmed or at_best or [None])[-1]


@dataclass
class SystemRun:
    """One system in one lengths mode: its accuracy and each scenario measured."""

    system: dict  # SystemSpec.record(): kind, variant, graphs, label, parent
    lengths: str  # real or fixed
    accuracy: AccuracyResult = None
    single_stream: LoadGenResult = None
    offline: LoadGenResult = None
    server: ServerSearch = None
    # the deformer's cache: directory, dtype, windows, read (a learned codec's also codec, product)
    passage_cache: dict = None
    cache_misses: int = 0  # windows the deformer's cache lacked at query time (checked before: 0 expected)
    warmup: dict = None  # the warm-up: single-query latency and the rates LoadGen was told to expect

    @classmethod
    def from_dict(cls, data):
        return _build(cls, {**data, "accuracy": AccuracyResult.from_dict(data.get("accuracy")),
                            "single_stream": LoadGenResult.from_dict(data.get("single_stream")),
                            "offline": LoadGenResult.from_dict(data.get("offline")),
                            "server": ServerSearch.from_dict(data.get("server"))})

    @property
    def label(self) -> str:
        return self.system["label"]


@dataclass
class ScenarioResults:
    scenarios: list  # asked for: single-stream, server, offline
    lengths: list  # real, fixed (the first is the headline)
    quick: bool
    samples: dict  # SampleSet.record()
    device: str
    profile: dict
    batching: dict  # max_batch_size, batch_wait_ms (server), offline batch size
    durations: dict  # what shortened the runs, if anything (--quick, --max-duration-s)
    latency_bound: dict  # ms, source; the calibration's p90 when measured here
    loadgen: dict  # version, where its settings came from
    runs: list  # SystemRun
    layout: list  # per system: F1 and answers in each lengths mode
    environment: dict
    machine_state: dict
    note: str = ""
    warnings: list = field(default_factory=list)
    format_version: int = RESULTS_FORMAT_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        return _build(cls, {**data, "runs": [SystemRun.from_dict(run) for run in data["runs"]]})

    def run(self, label: str, lengths: str) -> SystemRun | None:
        return next((run for run in self.runs if run.label == label and run.lengths == lengths), None)


REFERENCE_LABEL = "unsplit float32"


def accuracy_gate(results: ScenarioResults, run: SystemRun) -> dict:
    """F1 against the float32 unsplit model's of the same lengths mode (the gate: at least 99% of it) and against
    the system's own float32 parent. Missing figures stay None: a gate that cannot be judged is not met."""
    reference, parent = results.run(REFERENCE_LABEL, run.lengths), results.run(run.system["parent"], run.lengths)
    f1 = run.accuracy.f1 if run.accuracy else None
    reference_f1 = reference.accuracy.f1 if reference and reference.accuracy else None
    parent_f1 = parent.accuracy.f1 if parent and parent.accuracy else None
    ratio = f1 / reference_f1 if f1 is not None and reference_f1 else None
    return {"f1": f1, "reference_f1": reference_f1, "of_reference": ratio,
            "gate_met": ratio is not None and ratio >= GATE_FRACTION, "parent_f1": parent_f1,
            "vs_parent": f1 - parent_f1 if f1 is not None and parent_f1 is not None else None}


def offline_rate(run: SystemRun) -> float | None:
    return run.offline.throughput.get("samples_per_second") if run and run.offline else None


def speedups(results: ScenarioResults, run: SystemRun) -> dict:
    """Offline throughput and server QPS against the unsplit model of the same variant and lengths mode, and
    against the float32 unsplit model."""
    same = results.run(f"unsplit {run.system['variant']}", run.lengths)
    reference = results.run(REFERENCE_LABEL, run.lengths)

    def ratio(mine, theirs):
        return mine / theirs if mine and theirs else None

    def server_qps(other):
        return other.server.best_qps if other and other.server else None

    return {"offline_vs_unsplit_same_variant": ratio(offline_rate(run), offline_rate(same)),
            "offline_vs_unsplit_float32": ratio(offline_rate(run), offline_rate(reference)),
            "server_vs_unsplit_same_variant": ratio(server_qps(run), server_qps(same)),
            "server_vs_unsplit_float32": ratio(server_qps(run), server_qps(reference))}


def csv_rows(results: ScenarioResults) -> list:
    """One row per system and lengths mode: every headline figure with LoadGen's verdicts."""
    rows = []
    for run in results.runs:
        gate, ratios = accuracy_gate(results, run), speedups(results, run)
        single, offline, server = run.single_stream, run.offline, run.server
        best = server.best if server else None
        rows.append({
            "system": run.label, "kind": run.system["kind"], "variant": run.system["variant"],
            "lengths": run.lengths, "f1": gate["f1"], "exact_match": run.accuracy.exact_match if run.accuracy else None,
            "f1_of_unsplit_float32": gate["of_reference"], "gate_99_met": gate["gate_met"],
            "f1_vs_float32_parent": gate["vs_parent"],
            "single_stream_p50_ms": single.latency_ms("50.00") if single else None,
            "single_stream_p90_ms": single.latency_ms("90.00") if single else None,
            "single_stream_verdict": single.verdict if single else None,
            "offline_samples_per_s": offline_rate(run), "offline_verdict": offline.verdict if offline else None,
            "server_bound_ms": server.bound_ms if server else None,
            "server_max_qps": server.best_qps if server else None,
            "server_p99_ms": best.result.latency_ms("99.00") if best else None,
            "server_verdict": best.result.verdict if best else None,
            **ratios, "cache_misses": run.cache_misses,
            "quick": results.quick,
        })
    return rows
