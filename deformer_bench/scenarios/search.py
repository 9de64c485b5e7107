"""The server scenario's question: the highest QPS whose p99 latency stays within a bound.

MLPerf submitters tune server_target_qps by running LoadGen at a QPS, reading whether the latency constraint held,
and trying again. This is that loop, with the measurement passed in (`measure(qps) -> (met, payload)`: a LoadGen
run in run.py, a fake in the tests): from a starting QPS it doubles while the bound holds and halves while it does
not, then bisects (geometrically) between the highest QPS that met it and the lowest that did not, until they are
within `tolerance` of each other or the trials run out. Every QPS tried lies between those two, so a noisy
measurement narrows the interval on the wrong side but never inverts it; the figure is that of one run, as
LoadGen's is. A bound that no QPS down to `start * floor` meets is an
answer too: `best` is None and `outcome` says so.
"""

import math
from dataclasses import dataclass, field

MAX_TRIALS = 8
TOLERANCE = 0.05  # stop when the highest QPS met and the lowest missed are within 5%
FLOOR = 1 / 64  # give up below start / 64: at that rate the bound is not a matter of load
CONFIRM_STEP = 0.9
# the confirmation steps down to half the search's QPS at most: a search trial is shorter than a full-length run, so
# its p99 sees fewer of the slowest questions (a real-length passage of many windows) and can pass where a longer run
# does not; three steps (0.73x) proved too few on a 2-core CPU (the teacher's 6.3 QPS, met in 60 s, missed at 120 s
# down to 5.1 QPS)
CONFIRM_FLOOR = 0.5


@dataclass
class Trial:
    qps: float
    met: bool
    payload: object = None


@dataclass
class SearchOutcome:
    trials: list = field(default_factory=list)
    best: Trial = None  # the highest QPS that met the bound
    outcome: str = ""


def format_qps(value: float) -> str:
    return f"{value:.3g}"


def search_peak_qps(measure, start_qps: float, max_trials: int = MAX_TRIALS, tolerance: float = TOLERANCE,
                    floor: float = FLOOR) -> SearchOutcome:
    if not start_qps > 0 or max_trials < 1:
        raise ValueError(f"a search needs a positive start QPS and trials, got {start_qps!r}, {max_trials!r}")
    result = SearchOutcome()
    met_at, missed_at = None, None  # the highest QPS that met the bound, the lowest that missed it
    qps, lowest = start_qps, start_qps * floor
    while len(result.trials) < max_trials:
        met, payload = measure(qps)
        trial = Trial(qps, bool(met), payload)
        result.trials.append(trial)
        if trial.met and (met_at is None or qps > met_at.qps):
            met_at = trial
        if not trial.met and (missed_at is None or qps < missed_at):
            missed_at = qps
        if met_at is None:
            if qps / 2 < lowest:
                result.outcome = (f"no QPS met the bound: it was missed down to {format_qps(qps)} QPS "
                                  f"({len(result.trials)} trials)")
                return result
            qps /= 2
        elif missed_at is None:
            qps *= 2
        elif missed_at / met_at.qps <= 1 + tolerance:
            break
        else:
            qps = math.sqrt(met_at.qps * missed_at)
    result.best = met_at
    if met_at is None:
        result.outcome = (f"no QPS met the bound in {len(result.trials)} trials (lowest tried: "
                          f"{format_qps(min(t.qps for t in result.trials))} QPS)")
    elif missed_at is None:
        result.outcome = (f"every QPS tried met the bound, up to {format_qps(met_at.qps)} QPS: the peak is higher "
                          f"(trials ran out after {len(result.trials)})")
    else:
        within = missed_at / met_at.qps - 1
        result.outcome = (f"{format_qps(met_at.qps)} QPS met the bound, {format_qps(missed_at)} QPS missed it "
                          f"({within:.0%} apart, {len(result.trials)} trials)")
    return result


def confirm_peak_qps(measure, qps: float, step: float = CONFIRM_STEP, floor: float = CONFIRM_FLOOR) -> list:
    """The found QPS run again with the full durations (the search's trials are shorter); while the bound is missed,
    `step` lower, down to `floor` x the found QPS. Returns the Trials run; the last one met the bound, or none did."""
    if not (0 < step < 1 and 0 < floor <= 1):
        raise ValueError(f"a confirmation steps down: step and floor in (0, 1), got {step!r}, {floor!r}")
    trials, lowest = [], qps * floor * (1 - 1e-9)  # the floor itself is tried when a step lands on it
    while qps >= lowest:
        met, payload = measure(qps)
        trials.append(Trial(qps, bool(met), payload))
        if met:
            break
        qps *= step
    return trials
