"""LoadGen's settings (its mlperf.conf, then ours) and the SUT's dynamic batching."""

import threading
import time
from types import SimpleNamespace

import pytest

from deformer_bench.contracts.errors import RuntimeFailure
from deformer_bench.scenarios.driver import BatchingSUT, LoadGenPlan, loadgen_settings as make_settings

lg = pytest.importorskip("mlperf_loadgen")


def test_mlperf_conf_gives_the_durations_and_percentiles():
    single = make_settings(lg, LoadGenPlan("single-stream", False, 100, expected_latency_s=0.02))
    assert single.min_duration_ms == 600000 and single.single_stream_target_latency_percentile == pytest.approx(0.9)
    assert single.single_stream_expected_latency_ns == 20_000_000 and single.max_duration_ms == 0
    assert single.performance_sample_count_override == 100 and single.mode == lg.TestMode.PerformanceOnly
    assert single.qsl_rng_seed == 2085463073848966840  # mlperf.conf's seeds
    server = make_settings(lg, LoadGenPlan("server", False, 100, target_qps=12.5, latency_bound_s=0.25,
                                        max_duration_s=30))
    assert server.server_target_latency_percentile == pytest.approx(0.99) and server.min_duration_ms == 600000
    assert server.server_target_qps == 12.5 and server.server_target_latency_ns == 250_000_000
    assert server.max_duration_ms == 30000  # a cap; the minimum stays, so LoadGen labels the run INVALID
    offline = make_settings(lg, LoadGenPlan("offline", True, 10570, expected_qps=30.0))
    assert offline.min_query_count == 10570 and offline.mode == lg.TestMode.AccuracyOnly
    assert make_settings(lg, LoadGenPlan("offline", False, 30000)).min_query_count == 24576  # mlperf.conf's cap


def test_times_are_rounded_to_loadgens_units_not_truncated():
    """A bound of 20.367855 ms (3x a measured p90) went to LoadGen as 20367854 ns: 0.020367855 * 1e9 is
    20367854.999... in floating point, and int() truncated it."""
    server = make_settings(lg, LoadGenPlan("server", False, 10, target_qps=1.0, latency_bound_s=20.367855 / 1000,
                                        max_duration_s=0.0299996))
    assert server.server_target_latency_ns == 20_367_855 and server.max_duration_ms == 30
    single = make_settings(lg, LoadGenPlan("single-stream", False, 10, expected_latency_s=20.367855 / 1000))
    assert single.single_stream_expected_latency_ns == 20_367_855


class FakeLoadGen:
    """QuerySampleResponse and QuerySamplesComplete, recording what the SUT completes."""

    def __init__(self):
        self.completed, self.lock = [], threading.Lock()

    @staticmethod
    def QuerySampleResponse(sample_id, pointer, size):  # noqa: N802 - LoadGen's names
        import ctypes

        return SimpleNamespace(id=sample_id, data=ctypes.string_at(pointer, size) if size else b"")

    def QuerySamplesComplete(self, responses):  # noqa: N802
        with self.lock:
            self.completed.extend(responses)


def samples(*indices):
    return [SimpleNamespace(id=1000 + index, index=index) for index in indices]


def wait_for(fake, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(fake.completed) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def test_the_server_batches_what_arrives_within_the_wait_bound():
    fake, batches = FakeLoadGen(), []

    def answer(indices):
        batches.append(list(indices))
        return [f"answer {index}" for index in indices]

    with BatchingSUT(fake, answer, max_batch=3, wait_s=0.2) as sut:
        sut.issue_query(samples(0))
        time.sleep(0.02)
        sut.issue_query(samples(1))  # within the first one's wait: batched with it
        wait_for(fake, 2)
        sut.issue_query(samples(2, 3, 4, 5))  # more than a batch at once: no wait, split at max_batch
        wait_for(fake, 6)
    assert batches == [[0, 1], [2, 3, 4], [5]]
    assert {response.id: response.data for response in fake.completed} == {
        1000 + index: f"answer {index}".encode() for index in range(6)}
    assert sut.stats() == {"batches": 3, "mean_batch_size": 2.0, "max_batch_size": 3}


def test_a_lone_sample_waits_at_most_the_bound():
    fake = FakeLoadGen()
    with BatchingSUT(fake, lambda indices: [""] * len(indices), max_batch=8, wait_s=0.05) as sut:
        started = time.monotonic()
        sut.issue_query(samples(0))
        wait_for(fake, 1)
        waited = time.monotonic() - started
    assert 0.04 <= waited < 1.0 and fake.completed[0].data == b""


def test_a_failure_completes_every_sample_and_is_raised_after_the_test():
    fake, calls = FakeLoadGen(), []

    def answer(indices):
        calls.append(indices)
        raise ValueError("the graph failed")

    with BatchingSUT(fake, answer, max_batch=2, wait_s=0.0) as sut:
        sut.issue_query(samples(0, 1, 2, 3, 4))
        wait_for(fake, 5)
    assert len(fake.completed) == 5 and len(calls) == 1  # LoadGen can end; the work stopped at the first failure
    with pytest.raises(RuntimeFailure, match="ValueError: the graph failed"):
        sut.raise_failure("a test")


def test_an_interrupt_mid_test_reaches_the_waiting_thread_at_once():
    """LoadGen runs in a thread of its own: Ctrl-C is raised in the waiting thread within a poll, as
    InterruptedMidTest (run_cli then ends the process without Python's shutdown), while the test still runs."""
    import os
    import signal

    from deformer_bench.contracts.errors import InterruptedMidTest
    from deformer_bench.scenarios.driver import wait_for_test

    test_over = threading.Event()
    # Ctrl-C as a terminal delivers it: a suite started in the background (nohup ... &) inherits SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        with pytest.raises(InterruptedMidTest):
            wait_for_test(lambda: test_over.wait(10.0), poll_s=0.05)
        assert time.monotonic() - started < 2.0 and not test_over.is_set()  # not after the 10 s "test"
    finally:
        test_over.set()
        signal.signal(signal.SIGINT, previous)
    with pytest.raises(ValueError, match="LoadGen refused"):  # a failure of the test itself is raised as it was
        wait_for_test(lambda: (_ for _ in ()).throw(ValueError("LoadGen refused")))


def test_an_abandoned_sut_answers_nothing_more_and_is_not_waited_for():
    fake, calls = FakeLoadGen(), []

    def answer(indices):
        calls.append(list(indices))
        time.sleep(0.05)
        return [""] * len(indices)

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with BatchingSUT(fake, answer, max_batch=1, wait_s=0.0) as sut:
            sut.issue_query(samples(*range(100)))  # 5 s of work queued
            time.sleep(0.1)
            raise KeyboardInterrupt
    assert time.monotonic() - started < 1.0  # __exit__ did not wait for the queue
    time.sleep(0.2)
    assert len(calls) <= 4  # the worker stopped after the batch it was in
