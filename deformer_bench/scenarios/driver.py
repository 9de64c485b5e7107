"""LoadGen drives the system under test: its settings, the SUT it calls, one test.

Settings come from LoadGen's own mlperf.conf (built into the package: `TestSettings.FromConfig(..., conf_type=0)`)
under a model name it does not know, so the rules it gives every model apply (`*.<Scenario>.*`: 600 s minimum
durations, the 90th percentile for SingleStream, the 99th for Server, the seeds). Ours come on top:
- every sample is held in memory (performance_sample_count = the samples chosen);
- Offline's minimum sample count is the dataset's size, at most 24,576 (mlperf.conf's rule for its models);
- the expected rates LoadGen sizes its queries by (SingleStream's expected latency, Offline's expected QPS) come
  from the system's own warm-up, and Server's target QPS and latency bound from the search (search.py);
- a shorter run caps max_duration_ms (Offline: a smaller expected QPS, so a smaller query) and leaves the minimum
  duration as it is, so LoadGen itself labels it INVALID.

The SUT queues what LoadGen issues; one worker thread answers it in batches: at most `max_batch` samples, and
having waited at most `wait_s` after the oldest one arrived for more (the server's dynamic batching; SingleStream
has one sample at a time and Offline all of them at once, so neither waits).
"""

import array
import collections
import importlib
import threading
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..contracts.errors import ConfigError, InterruptedMidTest, RuntimeFailure, first_line
from . import logs

LOADGEN_SCENARIOS = {"single-stream": "SingleStream", "server": "Server", "offline": "Offline"}
# Not a model mlperf.conf names: only its rules for every model apply.
MLPERF_CONF_MODEL = "deformer-squad"
OFFLINE_MIN_SAMPLES_CAP = 24576  # mlperf.conf: Offline's min_query_count is the dataset's size, capped here
LOADGEN_PACKAGE = "mlcommons-loadgen==6.0.17"


def import_loadgen():
    """The mlperf_loadgen module (package mlcommons-loadgen), or a ConfigError saying how to get it."""
    try:
        import mlperf_loadgen  # deferred: mlperf_loadgen, an optional extra ([scenarios]) only a scenario run needs
    except ImportError:
        try:  # the wheel's own name: imported for its side effect, registering the mlperf_loadgen alias
            importlib.import_module("mlcommons_loadgen")
            import mlperf_loadgen
        except ImportError:
            raise ConfigError("--scenario runs MLPerf LoadGen, which is not installed (package mlcommons-loadgen)",
                              "pip install 'deformer-bench[scenarios]' (on an ARM board, build it from the sdist: "
                              "see README, 'Scenarios')") from None
    return mlperf_loadgen


def loadgen_version() -> str:
    try:
        return version("mlcommons-loadgen")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class LoadGenPlan:
    """One LoadGen test: the scenario (ours: single-stream, server, offline) and what we set on top of mlperf.conf."""

    scenario: str
    accuracy: bool
    sample_count: int
    expected_latency_s: float = None  # SingleStream: sizes the queries LoadGen generates
    expected_qps: float = None  # Offline: sizes its one query
    target_qps: float = None  # Server
    latency_bound_s: float = None  # Server: server_target_latency_ns (its p99 must stay within it)
    max_duration_s: float = None  # a cap: the run ends early, and LoadGen labels it INVALID


def loadgen_settings(lg, plan: LoadGenPlan):
    name = LOADGEN_SCENARIOS[plan.scenario]
    settings = lg.TestSettings()
    if settings.FromConfig("", MLPERF_CONF_MODEL, name, 0) != 0:  # conf_type 0: LoadGen's built-in mlperf.conf
        raise RuntimeFailure("LoadGen could not read its built-in mlperf.conf", f"reinstall {LOADGEN_PACKAGE}")
    settings.scenario = getattr(lg.TestScenario, name)
    settings.mode = lg.TestMode.AccuracyOnly if plan.accuracy else lg.TestMode.PerformanceOnly
    settings.performance_sample_count_override = plan.sample_count
    if plan.scenario == "offline":
        settings.min_query_count = min(OFFLINE_MIN_SAMPLES_CAP, plan.sample_count)
        if plan.expected_qps is not None:
            settings.offline_expected_qps = plan.expected_qps
    # rounded to LoadGen's whole ns and ms, not truncated: 20.367855 ms is 0.020367855 s, and 0.020367855 * 1e9 is
    # 20367854.999..., which int() would make a bound 1 ns tighter than the one recorded
    elif plan.scenario == "single-stream" and plan.expected_latency_s is not None:
        settings.single_stream_expected_latency_ns = max(1, round(plan.expected_latency_s * 1e9))
    elif plan.scenario == "server":
        settings.server_target_qps = plan.target_qps
        settings.server_target_latency_ns = round(plan.latency_bound_s * 1e9)
    if plan.max_duration_s is not None:
        settings.max_duration_ms = max(1, round(plan.max_duration_s * 1000))
    return settings


class BatchingSUT:
    """The system under test as LoadGen sees it. `answer_batch(sample indices) -> answer strings` is the query's
    work; a failure there is kept, the remaining samples are completed empty so that LoadGen can end, and
    `raise_failure()` raises it after the test."""

    def __init__(self, lg, answer_batch, max_batch: int, wait_s: float):
        self.lg, self.answer_batch, self.max_batch, self.wait_s = lg, answer_batch, max_batch, wait_s
        self.pending = collections.deque()  # (QuerySample, arrival time)
        self.condition = threading.Condition()
        self.closing = False
        self.abandoned = False  # an interrupt: LoadGen still runs, but nothing more is answered
        self.failure = None
        self.batch_sizes = collections.Counter()
        self.worker = threading.Thread(target=self._work, name="deformer-sut", daemon=True)

    def issue_query(self, samples) -> None:  # LoadGen's issuing thread: never blocks on the work
        arrived = time.monotonic()
        with self.condition:
            self.pending.extend((sample, arrived) for sample in samples)
            self.condition.notify()

    def flush_queries(self) -> None:
        pass  # the worker never holds samples back longer than wait_s

    def __enter__(self):
        self.worker.start()
        return self

    def __exit__(self, exc_type, *exc):
        with self.condition:
            self.closing = True
            # interrupted mid-test, LoadGen still issues samples: the worker stops after its batch, not joined
            self.abandoned = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
            self.condition.notify()
        if not self.abandoned:
            self.worker.join()

    def _next_batch(self) -> list:
        with self.condition:
            while not self.pending and not self.closing:
                self.condition.wait()
            if not self.pending or self.abandoned:
                return []
            deadline = self.pending[0][1] + self.wait_s
            while len(self.pending) < self.max_batch and not self.closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.condition.wait(remaining)
            return [self.pending.popleft()[0] for _ in range(min(self.max_batch, len(self.pending)))]

    def _work(self) -> None:
        while batch := self._next_batch():
            answers = [""] * len(batch)
            if self.failure is None:
                try:
                    answers = self.answer_batch([sample.index for sample in batch])
                except Exception as error:  # noqa: BLE001 - kept and raised after the test, which must end
                    self.failure = error
            self.batch_sizes[len(batch)] += 1
            self._complete(batch, answers)

    def _complete(self, batch, answers) -> None:
        buffers = [array.array("B", answer.encode("utf-8")) for answer in answers]
        responses = [self.lg.QuerySampleResponse(sample.id, buffer.buffer_info()[0], len(buffer))
                     for sample, buffer in zip(batch, buffers)]
        self.lg.QuerySamplesComplete(responses)  # LoadGen copies the bytes (accuracy mode) before returning

    def stats(self) -> dict:
        batches = sum(self.batch_sizes.values())
        samples = sum(size * count for size, count in self.batch_sizes.items())
        return {"batches": batches, "mean_batch_size": samples / batches if batches else None,
                "max_batch_size": max(self.batch_sizes, default=None)}

    def raise_failure(self, what: str) -> None:
        if self.failure is not None:
            error = self.failure
            if isinstance(error, RuntimeFailure):
                raise error
            raise RuntimeFailure(f"the system under test failed during {what}: {type(error).__name__}: "
                                 f"{first_line(error)}", "see the error; nothing of this run was kept") from error


def run_test(lg, plan: LoadGenPlan, answer_batch, log_dir: Path, max_batch: int, wait_s: float) -> dict:
    """One LoadGen test; its logs in `log_dir` (created). Returns the wall time and the SUT's batching."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = loadgen_settings(lg, plan)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = not plan.accuracy  # each sample's latency, for the CDF
    noop = lambda samples: None  # noqa: E731 - the samples are question texts, in memory already
    with BatchingSUT(lg, answer_batch, max_batch if plan.scenario != "single-stream" else 1,
                     wait_s if plan.scenario == "server" else 0.0) as sut:
        handle = lg.ConstructSUT(sut.issue_query, sut.flush_queries)
        library = lg.ConstructQSL(plan.sample_count, plan.sample_count, noop, noop)
        started, running = time.perf_counter(), False
        try:
            # An audit.config in the working directory would change the test; LoadGen reads none from here.
            wait_for_test(lambda: lg.StartTestWithLogSettings(handle, library, settings, log_settings,
                                                              str(log_dir / "audit.config")))
        except InterruptedMidTest:
            running = True  # LoadGen still uses its SUT and QSL: they are not destroyed under it
            raise
        finally:
            wall_s = time.perf_counter() - started
            if not running:
                lg.DestroyQSL(library)
                lg.DestroySUT(handle)
    sut.raise_failure(f"LoadGen's {LOADGEN_SCENARIOS[plan.scenario]} "
                      f"{'accuracy' if plan.accuracy else 'performance'} run")
    return {"wall_s": wall_s, **sut.stats()}


def wait_for_test(start_test, poll_s: float = 0.2) -> None:
    """Run LoadGen's test in a thread of its own while this one waits in Python. LoadGen cannot be stopped mid-test,
    and it calls the SUT from the thread that started it: Ctrl-C raised there unwinds through LoadGen's C++ and
    the process aborts or segfaults; and while that thread waits in C++, no signal handler runs for minutes. Here
    an interrupt reaches this thread at once and is raised as InterruptedMidTest: the caller's cleanup runs, then
    run_cli ends the process without touching LoadGen (its threads still run)."""
    failure = []

    def run() -> None:
        try:
            start_test()
        except BaseException as error:  # noqa: BLE001 - raised again in the waiting thread
            failure.append(error)

    runner = threading.Thread(target=run, name="loadgen-test", daemon=True)
    runner.start()
    try:
        while runner.is_alive():
            runner.join(poll_s)
    except KeyboardInterrupt:
        raise InterruptedMidTest() from None
    if failure:
        raise failure[0]


def drop_unkept_logs(log_dir: Path, accuracy: bool) -> None:
    """The trace has been read into the results (each sample's latency) and is not kept (it grows with the run);
    a performance run's accuracy log holds nothing."""
    (Path(log_dir) / logs.TRACE_FILE).unlink(missing_ok=True)
    if not accuracy:
        (Path(log_dir) / logs.ACCURACY_FILE).unlink(missing_ok=True)
