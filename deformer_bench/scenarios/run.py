"""A scenario run from end to end: every input checked before the first measurement, then per lengths mode and
system an accuracy run, then the scenarios asked for, all through LoadGen, into a new results folder.

Order within a lengths mode: the float32 unsplit system first (always part of a run: it is the accuracy gate's
reference, and its SingleStream p90 sets the server's default latency bound), then the others. Per system:
1. a warm-up (the first queries: sessions, caches and page cache warm; the single-query latency measured);
2. LoadGen's accuracy run (Offline, every sample once), scored with the SQuAD v1.1 metric; its rate is what the
   performance runs tell LoadGen to expect;
3. SingleStream, Offline, Server as asked (Server: the QPS search, then the found QPS confirmed at full length).
"""

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..answer import graph_set_tokenizer
from ..bench import machine_state
from ..bench.plan import session_settings as device_session_settings
from ..bench.run import start_machine_state
from ..contracts.errors import ConfigError, PassageCacheError
from ..contracts.manifest import load_graph_set
from ..environment import describe_environment
from ..files import (check_distinct_paths, check_output_dir, command_line, new_results_folder, staged_directory,
                     tokenizer_input)
from ..passage_cache import load_passage_cache
from ..passage_cache.store import check_windows_cut, graph_identity, resume_hint, tokenizer_sha256
from ..squad.features import check_doc_stride, featurize
from ..squad.metric import evaluate
from . import driver, logs
from .results import (REFERENCE_LABEL, AccuracyResult, LoadGenResult, ScenarioResults, ServerSearch, ServerTrial,
                      SystemRun)
from .report import write_report
from .samples import SampleSet, check_draw, choose_samples
from .search import confirm_peak_qps, format_qps, search_peak_qps
from .systems import DOC_STRIDE, QuestionAnswerer, SystemSpec

SCENARIOS = ("single-stream", "server", "offline")
BOUND_FACTOR = 3.0  # the default p99 bound: 3x the float32 unsplit system's SingleStream p90
QUICK_DURATION_S = 2.0  # --quick: each SingleStream and server run capped here
SEARCH_TRIAL_S = 60.0  # a server search trial (the found QPS is then run at full length)
MLPERF_MIN_DURATION_S = 600  # mlperf.conf's minimum duration of every scenario's performance run
OFFLINE_RATE_MARGIN = 1.2  # Offline's expected QPS above the accuracy run's rate: its query outlasts the minimum
SINGLE_STREAM_LATENCY_MARGIN = 0.5  # expected latency below the warm-up's: LoadGen generates queries to spare
SERVER_START_FRACTION = 0.5  # the search starts at half the accuracy run's rate (a batching server's ceiling)
# --quick: a short search that stops an eighth below its start (a trial lasts at least until its first query,
# 1/QPS on average: a search down to 1/64 of the start spends minutes waiting for single queries)
QUICK_SEARCH = {"max_trials": 5, "floor": 1 / 8}
# Bounds on the options LoadGen is handed (as whole ns and ms: past them it overflows, or a run never ends): a p99
# bound of an hour, a run capped at a day.
MAX_LATENCY_BOUND_MS = 3_600_000.0
MAX_DURATION_S = 86_400.0
# Why an int8 variant's answers move with the batch (measured on the shipped models: up to ~1 logit between real and
# fixed lengths, ~0.5 between a question alone and in a batch of 16; the float32 graphs agree to 4e-6).
DYNAMIC_INT8 = ("int8's dynamic quantization scales activations per tensor, over the whole batch, so padding and "
                "the questions sharing a batch move its logits (not a layout slip)")
RESULTS_FILE, CSV_FILE = "results.json", "results.csv"


@dataclass
class ScenarioRequest:
    scenarios: list  # of SCENARIOS
    systems: list  # SystemSpec, the reference (unsplit float32) first
    lengths: list  # real, fixed
    dataset: Path
    profile: object  # profiles.Profile
    device: object  # bench.devices.Device
    output_root: Path
    limit: int = None
    seed: int = 0
    doc_stride: int = DOC_STRIDE  # the windows' overlap: the passage caches' own
    passage_caches: list = None  # directories; matched to the deformer systems by their lower_passage graph
    latency_bound_ms: float = None
    max_duration_s: float = None
    quick: bool = False
    note: str = ""
    progress: bool = True
    command: list = None

    @property
    def max_batch_size(self) -> int:
        return self.profile.max_batch_size or max(self.profile.batch_sizes)


@dataclass
class PreparedSystem:
    spec: SystemSpec
    graph_set: object
    tokenizer: object
    cache: object = None  # the deformer's PassageCache
    cache_record: dict = None


def say(request: ScenarioRequest, line: str) -> None:
    if request.progress:
        print(line, file=sys.stderr, flush=True)


# ---- checks before any measurement ---------------------------------------------------------------------------

def check_request(request: ScenarioRequest) -> None:
    if not request.scenarios or any(name not in SCENARIOS for name in request.scenarios):
        raise ConfigError(f"unknown scenario in {request.scenarios}", f"use some of: {', '.join(SCENARIOS)}")
    if not request.systems or request.systems[0] != SystemSpec("unsplit", request.systems[0].graphs, "float32"):
        raise ValueError("the reference system (unsplit float32) must come first: the gate and the bound need it")
    for option, value, maximum, unit, example in (
            ("--latency-bound-ms", request.latency_bound_ms, MAX_LATENCY_BOUND_MS, "milliseconds", 200),
            ("--max-duration-s", request.max_duration_s, MAX_DURATION_S, "seconds", 120)):
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value) and 0 < value <= maximum):
            raise ConfigError(f"{option} must be a number of {unit} above 0 and at most {maximum:g}, got {value!r}",
                              f"e.g. {option} {example}")
    check_draw(request.limit, request.seed)


def request_inputs(request: ScenarioRequest) -> dict:
    """{what: path} of everything a run reads, named or found by default: the dataset, every graph set and the
    tokenizer folder its manifest names (the model it was exported from), every passage cache, the profile file."""
    inputs = {"the dataset": request.dataset}
    for graphs in dict.fromkeys(Path(spec.graphs) for spec in request.systems):
        kinds = "/".join(dict.fromkeys(spec.kind for spec in request.systems if Path(spec.graphs) == graphs))
        inputs[f"the {kinds} graph set {{}}"] = graphs
        inputs.update(tokenizer_input(graphs, None))
    for number, directory in enumerate(request.passage_caches or [], 1):
        inputs[f"passage cache #{number} {{}}"] = Path(directory)
    if request.profile.source:  # a built-in profile's is the package's own file
        inputs[f"the profile {request.profile.name!r} ({{}})"] = Path(str(request.profile.source))
    return inputs


def check_output_location(request: ScenarioRequest) -> None:
    """The results root can be written, and neither is nor lies inside anything the run reads (files'
    one rule for every command's paths); it may hold them: the run only adds a new folder of its own to it."""
    check_output_dir(request.output_root, "--output")
    check_distinct_paths({"--output": request.output_root}, request_inputs(request), roots=("--output",))


def prepare_systems(request: ScenarioRequest, samples: SampleSet) -> list:
    """Every system's verified graph set and tokenizer, and each deformer's passage cache: one built with its own
    lower_passage graph, finished, cut with the same stride and tokenizer, holding every window of the samples."""
    prepared, tokenizers = [], {}
    for spec in request.systems:
        graph_set = load_graph_set(spec.graphs, spec.variant)
        check_doc_stride(graph_set.deformer.passage_len, request.doc_stride)
        source = graph_set.model.source
        if source not in tokenizers:
            tokenizers[source] = graph_set_tokenizer(graph_set)
        prepared.append(PreparedSystem(spec, graph_set, tokenizers[source]))
    match_caches([system for system in prepared if system.spec.kind == "deformer"], request.passage_caches or [],
                 samples, request.doc_stride)
    return prepared


def cache_build_command(spec: SystemSpec, dataset, out, doc_stride: int = DOC_STRIDE, append: bool = False) -> str:
    """The deformer-cache build that makes (or, `append`, completes) a system's passage cache of `dataset`, as a
    command to paste: the float32 graphs are deformer-cache's default, any other variant is named with --variant.
    `out` is a path, or a word such as DIR for the user to choose."""
    return command_line("deformer-cache", "build", Path(spec.graphs),
                        *(("--variant", spec.variant) if spec.variant != "float32" else ()),
                        "--passages", Path(dataset), "--out", out, "--doc-stride", doc_stride,
                        "--append" if append else None)


def match_caches(deformers: list, directories: list, samples: SampleSet, doc_stride: int = DOC_STRIDE) -> None:
    """Give each deformer system the cache built with its lower_passage graph; a cache that fits none of them
    (another graph set, another variant) is refused, as is a system without one."""
    caches = []
    for directory in directories:
        cache = load_passage_cache(directory)
        caches.append((Path(directory), cache, cache.info["identity"].get("lower_passage_sha256")))
    wanted = {id(system): graph_identity(system.graph_set)["lower_passage_sha256"] for system in deformers}
    for directory, cache, identity in caches:
        if identity not in wanted.values():
            theirs = cache.info["identity"]
            raise PassageCacheError(
                f"passage cache {directory} was built with another lower_passage graph (model "
                f"{str(theirs.get('model_fingerprint_sha256'))[:12]}, k={theirs.get('layer')}, variant "
                f"{theirs.get('variant', 'float32')}) than any deformer system of this run ("
                + ", ".join(f"{system.spec.label} of {system.spec.graphs}" for system in deformers) + ")",
                "give the caches built from these graph sets and variants (deformer-cache build GRAPHS, with "
                "--variant V for a variant's)")
    for system in deformers:
        found = [(directory, cache) for directory, cache, identity in caches if identity == wanted[id(system)]]
        build = cache_build_command(system.spec, samples.dataset, "DIR", doc_stride)
        if not found:
            raise PassageCacheError(f"no passage cache given was built with the lower_passage graph of "
                                    f"{system.spec.label} ({system.spec.graphs})",
                                    f"build one ({build}) and give it with --passage-cache DIR")
        if len(found) > 1:
            raise PassageCacheError(f"passage caches {found[0][0]} and {found[1][0]} were both built with the "
                                    f"lower_passage graph of {system.spec.label}", "give one of them")
        directory, cache = found[0]
        if not cache.info.get("complete"):  # it goes on only with the build that started it (issue 22)
            raise PassageCacheError(f"passage cache {directory} is not finished (its build was interrupted)",
                                    resume_hint(cache.info["unfinished_build"]))
        check_windows_cut(cache.info, directory, doc_stride, tokenizer_sha256(system.tokenizer))
        check_cache_holds_samples(system, cache, directory, samples, doc_stride)
        system.cache = cache
        system.cache_record = {"directory": str(directory), "dtype": cache.info["dtype"], "windows": cache.windows,
                               "variant": cache.info["identity"].get("variant", "float32")}


def check_cache_holds_samples(system: PreparedSystem, cache, directory: Path, samples: SampleSet,
                              doc_stride: int) -> None:
    """Every window of every sample's passage is in the cache: a `deformer` query is a cache hit by definition
    (misses are the deformer-miss system's)."""
    deformer = system.graph_set.deformer
    features = featurize(list(samples.examples), system.tokenizer, deformer.question_len, deformer.passage_len,
                         doc_stride, progress=False)
    missing = int((cache.lookup(features.passage_input_ids, features.passage_attention_mask) < 0).sum())
    if missing:
        raise PassageCacheError(
            f"passage cache {directory} lacks {missing:,} of the {len(features):,} passage windows of the "
            f"{len(samples):,} questions asked (it was built from other passages, or this dataset lacks them)",
            "build the dataset's passages into it: "
            + cache_build_command(system.spec, samples.dataset, directory, doc_stride, append=True))


def session_settings(request: ScenarioRequest) -> dict:
    return device_session_settings(request.device, request.profile)


# ---- one system ----------------------------------------------------------------------------------------------

class SystemMeasurement:
    """Everything measured of one system in one lengths mode, writing LoadGen's logs under `log_root`."""

    def __init__(self, request, lg, system: PreparedSystem, samples: SampleSet, lengths: str, log_root: Path,
                 results_dir: Path):
        self.request, self.lg, self.system, self.samples, self.lengths = request, lg, system, samples, lengths
        self.log_root, self.results_dir = log_root, results_dir
        self.answerer = QuestionAnswerer(system.spec, system.graph_set, system.tokenizer, session_settings(request),
                                         system.cache, request.doc_stride)
        self.run = SystemRun(system.spec.record(), lengths, passage_cache=self.cache_record())
        self.answers = {}  # question id -> answer, from LoadGen's accuracy log

    def cache_record(self):
        """The deformer's cache as prepared, when its windows are read (beside lower_question: results written before
        this key read them first), and for a learned codec, its codec and where its decode's product ran (a batch
        with a cache miss reads and decodes in numpy, before upper: the run's cache misses count those)."""
        record, cache = self.system.cache_record, self.system.cache
        if record is None or cache is None:
            return record
        record = {**record, "read": "beside lower_question"}
        if cache.codec is None:
            return record
        return {**record, "codec": cache.codec.describe(),
                "product": "in upper's graph" if self.answerer.coded_upper is not None else "numpy"}

    def answer_batch(self, indices: list) -> list:
        return self.answerer.answer([self.samples.examples[index] for index in indices], self.lengths)

    def loadgen(self, plan: driver.LoadGenPlan, log_dir: Path) -> LoadGenResult:
        sut = driver.run_test(self.lg, plan, self.answer_batch, log_dir, self.request.max_batch_size,
                              self.request.profile.batch_wait_ms / 1000)
        result = LoadGenResult.from_logs(log_dir, self.results_dir, sut)
        driver.drop_unkept_logs(log_dir, plan.accuracy)
        return result

    def warm_up(self) -> float:
        """Single queries until the profile's warm-up count and time are reached; their median latency (s)."""
        profile, count = self.request.profile, len(self.samples)
        minimum, minimum_s = (2, 0.0) if self.request.quick else (profile.warmup_min_count, profile.warmup_min_time_s)
        latencies, started = [], time.perf_counter()
        while len(latencies) < minimum or time.perf_counter() - started < minimum_s:
            index = len(latencies) % count
            began = time.perf_counter()
            self.answer_batch([index])
            latencies.append(time.perf_counter() - began)
        return statistics.median(latencies)

    def measure(self, bound_ms) -> SystemRun:
        request, count = self.request, len(self.samples)
        latency = self.warm_up()
        self.accuracy()
        rate = self.run.accuracy.samples_per_second
        self.run.warmup = {"single_query_latency_ms": latency * 1000, "accuracy_run_samples_per_s": rate}
        scenarios = request.scenarios
        if "single-stream" in scenarios or self.sets_bound(bound_ms):
            expected = latency * SINGLE_STREAM_LATENCY_MARGIN
            self.run.single_stream = self.loadgen(driver.LoadGenPlan(
                "single-stream", False, count, expected_latency_s=expected, max_duration_s=self.capped()),
                self.log_dir("single-stream"))
            self.run.warmup["single_stream_expected_latency_ms"] = expected * 1000
            self.report_line("single-stream", f"p90 {self.run.single_stream.latency_ms('90.00'):.2f} ms",
                             self.run.single_stream)
        if "offline" in scenarios:
            expected = self.offline_expected_qps(rate)
            self.run.offline = self.loadgen(driver.LoadGenPlan("offline", False, count, expected_qps=expected),
                                            self.log_dir("offline"))
            self.run.warmup["offline_expected_qps"] = expected
            self.report_line("offline", f"{self.run.offline.throughput.get('samples_per_second', 0):.2f} samples/s",
                             self.run.offline)
        return self.run

    def offline_expected_qps(self, rate: float) -> float:
        """The rate LoadGen sizes Offline's one query by: 1.1 x its 600 s minimum x this many samples, and never
        fewer than every sample once (its minimum sample count)."""
        if self.request.quick:  # so low that the query is the minimum: every sample once
            return len(self.samples) / (1.1 * MLPERF_MIN_DURATION_S * 2)
        if self.request.max_duration_s is None:  # past the minimum duration: a VALID run
            return rate * OFFLINE_RATE_MARGIN
        # --max-duration-s: a query of about max_duration_s x the accuracy run's rate, so the run lasts about the
        # cap (the minimum duration stays, so LoadGen labels a shorter one INVALID)
        return rate * min(self.request.max_duration_s, MLPERF_MIN_DURATION_S) / (1.1 * MLPERF_MIN_DURATION_S)

    def sets_bound(self, bound_ms) -> bool:
        return "server" in self.request.scenarios and bound_ms is None and self.system.spec.label == REFERENCE_LABEL

    def capped(self):
        return QUICK_DURATION_S if self.request.quick else self.request.max_duration_s

    def accuracy(self) -> None:
        log_dir = self.log_dir("accuracy")
        result = self.loadgen(driver.LoadGenPlan("offline", True, len(self.samples)), log_dir)
        responses = logs.read_accuracy_log(log_dir)
        self.answers = {self.samples.examples[index].id: data.decode("utf-8", errors="replace")
                        for index, data in responses.items()}
        scores = evaluate(self.samples.examples, self.answers)
        self.run.accuracy = AccuracyResult(scores["f1"], scores["exact_match"], len(self.samples), len(responses),
                                           sum(1 for answer in self.answers.values() if not answer), result.wall_s,
                                           result)
        say(self.request, f"{self.system.spec.label} ({self.lengths} lengths): accuracy F1 {scores['f1']:.2f} "
                          f"EM {scores['exact_match']:.2f} on {len(self.samples)} questions "
                          f"({self.run.accuracy.samples_per_second:.1f} samples/s)")

    def server(self, bound_ms: float) -> None:
        request, count = self.request, len(self.samples)
        trial_s = QUICK_DURATION_S if request.quick else min(SEARCH_TRIAL_S, request.max_duration_s or SEARCH_TRIAL_S)
        trials = []

        def measure(qps, confirmation):
            name = f"{'confirm' if confirmation else 'trial'}-{len(trials) + 1:02d}-qps-{format_qps(qps)}"
            result = self.loadgen(driver.LoadGenPlan("server", False, count, target_qps=qps,
                                                  latency_bound_s=bound_ms / 1000,
                                                  max_duration_s=request.max_duration_s if confirmation else trial_s),
                                  self.log_dir("server") / name)
            trial = ServerTrial(qps, bool(result.constraints.get("perf_constraints_met")), confirmation, result)
            trials.append(trial)
            say(request, f"  server {format_qps(qps)} QPS: p99 {result.latency_ms('99.00'):.2f} ms "
                         f"({'within' if trial.meets_bound else 'past'} {bound_ms:.2f} ms)")
            return trial.meets_bound, trial

        start = max(self.run.accuracy.samples_per_second * SERVER_START_FRACTION, 1e-3)
        found = search_peak_qps(lambda qps: measure(qps, False), start, **(QUICK_SEARCH if request.quick else {}))
        best_qps, outcome = (found.best.qps if found.best else None), found.outcome
        if best_qps is not None and not request.quick:
            confirmed = confirm_peak_qps(lambda qps: measure(qps, True), best_qps)
            if confirmed[-1].met:
                best_qps = confirmed[-1].qps
                outcome += f"; confirmed at {format_qps(best_qps)} QPS with the run's full durations"
            else:
                outcome += (f"; but run at the full durations, {', '.join(format_qps(t.qps) for t in confirmed)} QPS "
                            "missed the bound too: no QPS is reported")
                best_qps = None
        self.run.server = ServerSearch(bound_ms, trials, best_qps, outcome)
        best = self.run.server.best
        self.report_line("server", f"max QPS {format_qps(best_qps)} at p99 {best.result.latency_ms('99.00'):.2f} ms"
                         if best else f"no QPS met p99 <= {bound_ms:.2f} ms", best.result if best else None)

    def log_dir(self, name: str) -> Path:
        return self.log_root / self.lengths / self.system.spec.slug / name

    def close(self) -> None:
        """The sessions go (the answers stay, for the lengths comparison): a run holds one system's graphs at a time."""
        self.run.cache_misses = self.answerer.cache_misses
        self.answerer = None

    def report_line(self, scenario: str, figure: str, result) -> None:
        verdict = f" [LoadGen: {result.verdict}]" if result is not None and result.verdict else ""
        say(self.request, f"{self.system.spec.label} ({self.lengths} lengths): {scenario} {figure}{verdict}")


# ---- the whole run -------------------------------------------------------------------------------------------

def latency_bound(request: ScenarioRequest, reference_run: SystemRun) -> dict:
    if request.latency_bound_ms is not None:
        return {"ms": request.latency_bound_ms, "source": "--latency-bound-ms"}
    p90 = reference_run.single_stream.latency_ms("90.00")
    return {"ms": BOUND_FACTOR * p90, "factor": BOUND_FACTOR, "reference_p90_ms": p90,
            "source": f"{BOUND_FACTOR:g}x the {REFERENCE_LABEL} system's SingleStream p90 ({reference_run.lengths} "
                      "lengths), measured in this run"}


def layout_comparison(measurements: list) -> list:
    """Per system: F1 in each lengths mode and how many answers differ between the modes (a slip in a model's
    layout under real lengths would show here)."""
    by_label = {}
    for measurement in measurements:
        by_label.setdefault(measurement.system.spec.label, {})[measurement.lengths] = measurement
    rows = []
    for label, modes in by_label.items():
        row = {"system": label, "f1": {mode: m.run.accuracy.f1 for mode, m in modes.items()}}
        if {"real", "fixed"} <= set(modes):
            real, fixed = modes["real"].answers, modes["fixed"].answers
            row["f1_real_minus_fixed"] = modes["real"].run.accuracy.f1 - modes["fixed"].run.accuracy.f1
            row["answers_differing"] = sum(1 for qid in real if real[qid] != fixed.get(qid))
        rows.append(row)
    return rows


def result_warnings(request: ScenarioRequest, runs: list, layout: list, machine: dict) -> list:
    found = list(machine["warnings"])
    if request.quick:
        found.append("--quick: every run is capped far below LoadGen's minimum durations; LoadGen labels them "
                     "INVALID and the figures are a functional check, not results")
    elif request.max_duration_s is not None:
        found.append(f"--max-duration-s {request.max_duration_s:g}: SingleStream and Server runs were capped, and "
                     "Offline's one query sized to last about as long (never fewer than every sample once); LoadGen "
                     "labels runs shorter than its minimum duration INVALID")
    for run in runs:
        if run.cache_misses:
            found.append(f"{run.label} ({run.lengths}): {run.cache_misses} windows missed the passage cache at query "
                         "time and ran lower_passage")
    for row in layout:
        if row.get("answers_differing"):
            why = (DYNAMIC_INT8 if row["system"].split(" ", 1)[1].startswith("int8")
                   else "a float32 system's layouts should agree to rounding: look for a slip")
            found.append(f"{row['system']}: {row['answers_differing']} answers differ between real and fixed lengths "
                         f"(F1 {row['f1_real_minus_fixed']:+.2f}); {why}")
    return found


def run_scenarios(request: ScenarioRequest) -> Path:
    """Check everything, measure, and write the results folder; returns its path."""
    check_request(request)
    check_output_location(request)  # now, not after reading every input
    lg = driver.import_loadgen()
    samples = choose_samples(request.dataset, request.limit, request.seed)
    systems = prepare_systems(request, samples)
    model = "+".join(dict.fromkeys(spec.graphs.resolve().name for spec in request.systems))
    final = new_results_folder(request.output_root, request.profile.name + ("-quick" if request.quick else ""), model)
    environment = describe_environment(request.command or ["deformer-bench"])  # the code and machine measured
    machine_start = start_machine_state()
    with staged_directory(final) as staging:
        log_root = staging / "loadgen"
        measurements, bound = [], ({"ms": request.latency_bound_ms, "source": "--latency-bound-ms"}
                                   if request.latency_bound_ms is not None else None)
        for lengths in request.lengths:
            for system in systems:
                measurement = SystemMeasurement(request, lg, system, samples, lengths, log_root, staging)
                measurement.measure(bound["ms"] if bound else None)
                if bound is None and measurement.sets_bound(None):
                    bound = latency_bound(request, measurement.run)
                    say(request, f"server latency bound: {bound['ms']:.2f} ms ({bound['source']})")
                if "server" in request.scenarios:
                    measurement.server(bound["ms"])
                measurement.close()
                measurements.append(measurement)
        runs = [measurement.run for measurement in measurements]
        layout = layout_comparison(measurements)
        machine = machine_state.machine_state_record(machine_start, machine_state.snapshot())
        results = ScenarioResults(
            scenarios=list(request.scenarios), lengths=list(request.lengths), quick=request.quick,
            samples={**samples.record(), "doc_stride": request.doc_stride}, device=request.device.name,
            profile=request.profile.to_dict(),
            batching={"max_batch_size": request.max_batch_size, "batch_wait_ms": request.profile.batch_wait_ms,
                      "batch": "questions (a question's windows run together)"},
            durations={"quick": request.quick, "max_duration_s": request.max_duration_s,
                       "search_trial_s": QUICK_DURATION_S if request.quick else min(
                           SEARCH_TRIAL_S, request.max_duration_s or SEARCH_TRIAL_S)},
            latency_bound=bound or {}, loadgen={"version": driver.loadgen_version(),
                                                "settings": f"LoadGen's built-in mlperf.conf for any model "
                                                            f"('{driver.MLPERF_CONF_MODEL}'), then this run's "
                                                            "(performance sample count, rates, bound, caps)"},
            runs=runs, layout=layout, environment=environment,
            machine_state=machine, note=request.note,
            warnings=result_warnings(request, runs, layout, machine))
        (staging / RESULTS_FILE).write_text(json.dumps(results.to_dict(), indent=1) + "\n")
        write_report(staging)
    return final
