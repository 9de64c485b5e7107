"""Latency statistics built from raw samples (kept), paired speed-ups with bootstrap CIs, the spread of a figure
across fresh processes, warnings."""

from dataclasses import dataclass, field

import numpy as np

UNSTABLE_CV = 0.10  # coefficient of variation above which a figure is flagged
UNSTABLE_TAIL = 2.0  # p99 / p50 above which the tail is flagged
UNSTABLE_SPREAD = 0.05  # largest distance of a per-process figure from their median, as a fraction of it


@dataclass(frozen=True)
class LatencyStats:
    values_ns: list = field(repr=False)

    def __post_init__(self):
        if len(self.values_ns) == 0:
            raise ValueError("no latency samples")

    def _ms(self):
        return np.asarray(self.values_ns, dtype=np.float64) / 1e6

    @property
    def count(self) -> int:
        return len(self.values_ns)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self._ms(), q))

    @property
    def mean_ms(self) -> float:
        return float(self._ms().mean())

    @property
    def std_ms(self) -> float:
        return float(self._ms().std(ddof=1)) if self.count > 1 else 0.0

    def summary(self) -> dict:
        return {
            "count": self.count,
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p99_ms": self.percentile_ms(99),
            "mean_ms": self.mean_ms,
            "std_ms": self.std_ms,
        }

    def throughput(self, batch_size: int) -> float:
        """Samples per second at this batch size, from the mean latency."""
        return batch_size / (self.mean_ms / 1e3)

    def warnings(self, label: str) -> list:
        found = []
        cv = self.std_ms / self.mean_ms if self.mean_ms > 0 else 0.0
        if cv > UNSTABLE_CV:
            found.append(f"{label}: unstable, std is {cv:.0%} of the mean over {self.count} runs")
        p50 = self.percentile_ms(50)
        if p50 > 0 and self.percentile_ms(99) / p50 > UNSTABLE_TAIL:
            found.append(f"{label}: long tail, p99 is {self.percentile_ms(99) / p50:.1f}x p50")
        return found


@dataclass(frozen=True)
class SpeedUp:
    ratio: float  # median(baseline) / median(candidate)
    ci_low: float
    ci_high: float
    pairs: int

    def to_dict(self) -> dict:
        return {"ratio": self.ratio, "ci95_low": self.ci_low, "ci95_high": self.ci_high, "pairs": self.pairs}


def _pairs(baseline_ns, candidate_ns) -> tuple:
    pairs = min(len(baseline_ns), len(candidate_ns))
    if pairs == 0:
        raise ValueError("no paired samples")
    return (np.asarray(baseline_ns[:pairs], dtype=np.float64), np.asarray(candidate_ns[:pairs], dtype=np.float64))


def median_ratio(baseline_ns, candidate_ns) -> float:
    """median(baseline) / median(candidate) over the rounds both have: one process's paired speed-up."""
    baseline, candidate = _pairs(baseline_ns, candidate_ns)
    return float(np.median(baseline) / np.median(candidate))


def paired_speedup(baseline_ns, candidate_ns, confidence=0.95, resamples=2000, seed=0) -> SpeedUp:
    """Speed-up of candidate over baseline from samples taken in the same rounds.

    Pairs are resampled together (round i of both), so drift that hits both paths cancels out.
    """
    baseline, candidate = _pairs(baseline_ns, candidate_ns)
    pairs, ratio = len(baseline), median_ratio(baseline, candidate)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, pairs, size=(resamples, pairs))
    ratios = np.median(baseline[picks], axis=1) / np.median(candidate[picks], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return SpeedUp(ratio, float(low), float(high), pairs)


@dataclass(frozen=True)
class Spread:
    """One figure measured once in each fresh process (a p50, a speed-up): the values kept, their median and range."""

    values: tuple

    def __post_init__(self):
        if len(self.values) == 0:
            raise ValueError("no per-process values")

    @property
    def median(self) -> float:
        return float(np.median(self.values))

    @property
    def deviation(self) -> float:
        """How far the farthest value lies from the median, as a fraction of the median."""
        median = self.median
        return max(abs(value - median) for value in self.values) / median if median else 0.0

    def to_dict(self) -> dict:
        return {"values": [float(value) for value in self.values], "median": self.median,
                "min": float(min(self.values)), "max": float(max(self.values)), "max_deviation": self.deviation}

    def warnings(self, label: str, limit: float = UNSTABLE_SPREAD) -> list:
        if len(self.values) < 2 or self.deviation <= limit:
            return []
        return [f"{label}: the {len(self.values)} timing processes disagree, values {min(self.values):.2f}.."
                f"{max(self.values):.2f} lie up to {self.deviation:.0%} from their median {self.median:.2f} "
                f"(limit {limit:.0%})"]
