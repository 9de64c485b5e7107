"""The server's QPS search and its confirmation, with a fake measurement in place of LoadGen."""

import pytest

from deformer_bench.scenarios.search import confirm_peak_qps, search_peak_qps


def threshold(peak: float, calls: list = None):
    """A system whose p99 stays within the bound up to `peak` QPS."""
    def measure(qps):
        if calls is not None:
            calls.append(qps)
        return qps <= peak, {"qps": qps}
    return measure


def test_the_search_brackets_then_bisects_to_within_the_tolerance():
    calls = []
    found = search_peak_qps(threshold(37.0, calls), start_qps=10.0, max_trials=12, tolerance=0.05)
    assert calls[:3] == [10.0, 20.0, 40.0]  # doubling while the bound holds
    assert 37.0 / 1.05 <= found.best.qps <= 37.0 and found.best.met
    missed = min(qps for qps in calls if qps > 37.0)
    assert missed / found.best.qps <= 1.05 and "met the bound" in found.outcome
    assert [trial.qps for trial in found.trials] == calls and found.best.payload == {"qps": found.best.qps}


def test_a_start_above_the_peak_halves_until_the_bound_holds():
    calls = []
    found = search_peak_qps(threshold(3.0, calls), start_qps=40.0, max_trials=12)
    assert calls[:5] == [40.0, 20.0, 10.0, 5.0, 2.5]
    assert 3.0 / 1.05 <= found.best.qps <= 3.0


def test_a_bound_that_no_qps_meets_is_an_answer_not_a_failure():
    calls = []
    found = search_peak_qps(threshold(0.0, calls), start_qps=8.0, max_trials=20, floor=1 / 8)
    assert found.best is None and found.outcome.startswith("no QPS met the bound")
    assert calls == [8.0, 4.0, 2.0, 1.0] and min(calls) >= 8.0 / 8  # stops at the floor, not after 20 trials


def test_trials_running_out_say_what_is_known():
    found = search_peak_qps(threshold(1e9), start_qps=1.0, max_trials=4)
    assert found.best.qps == 8.0 and "the peak is higher" in found.outcome
    found = search_peak_qps(threshold(0.0), start_qps=1.0, max_trials=3, floor=1e-9)
    assert found.best is None and "no QPS met the bound in 3 trials" in found.outcome


def test_the_confirmation_steps_down_until_the_bound_holds():
    calls = []
    trials = confirm_peak_qps(threshold(8.5, calls), 10.0, step=0.9, floor=0.5)
    assert calls == [10.0, 9.0, pytest.approx(8.1)] and trials[-1].met
    # the default keeps stepping past three runs: a bound met at 0.6x the search's QPS is still found
    calls = []
    trials = confirm_peak_qps(threshold(6.0, calls), 10.0)
    assert trials[-1].met and trials[-1].qps == pytest.approx(10.0 * 0.9 ** 5) and len(calls) == 6
    # down to the floor and no further: 10, 9, 8.1, 7.29 ... 5.31 (>= 5), never 4.78
    calls = []
    trials = confirm_peak_qps(threshold(1.0, calls), 10.0, step=0.9, floor=0.5)
    assert len(trials) == 7 and not any(trial.met for trial in trials) and min(calls) >= 5.0
    assert len(confirm_peak_qps(threshold(1.0), 10.0, step=0.5, floor=0.5)) == 2  # the floor itself is tried
    with pytest.raises(ValueError):
        confirm_peak_qps(threshold(1.0), 10.0, step=1.0)


def test_a_search_needs_a_start():
    with pytest.raises(ValueError):
        search_peak_qps(threshold(1.0), start_qps=0.0)
