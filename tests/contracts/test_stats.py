import numpy as np
import pytest

from deformer_bench.contracts.stats import LatencyStats, paired_speedup


def test_latency_stats_from_known_values():
    stats = LatencyStats([i * 1_000_000 for i in range(1, 101)])  # 1..100 ms
    summary = stats.summary()
    assert summary["count"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p90_ms"] == pytest.approx(90.1)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["mean_ms"] == pytest.approx(50.5)
    assert summary["std_ms"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert stats.throughput(batch_size=4) == pytest.approx(4 / 0.0505)


def test_empty_samples_are_an_error():
    with pytest.raises(ValueError):
        LatencyStats([])


def test_stable_samples_give_no_warning_and_noisy_ones_do():
    assert LatencyStats([10_000_000 + i for i in range(50)]).warnings("x") == []
    noisy = LatencyStats([10_000_000] * 40 + [50_000_000] * 10).warnings("batch 1 online")
    assert any("unstable" in warning and "batch 1 online" in warning for warning in noisy)
    assert any("long tail" in warning for warning in noisy)


def test_paired_speedup_of_an_exact_ratio():
    rng = np.random.default_rng(0)
    candidate = rng.uniform(9e6, 11e6, 200)
    speedup = paired_speedup(list(candidate * 3), list(candidate))
    assert speedup.ratio == pytest.approx(3.0)
    assert speedup.ci_low == pytest.approx(3.0) and speedup.ci_high == pytest.approx(3.0)


def test_paired_speedup_interval_covers_the_truth_and_has_width():
    rng = np.random.default_rng(1)
    baseline = rng.normal(30e6, 3e6, 300)
    candidate = rng.normal(15e6, 1.5e6, 300)
    speedup = paired_speedup(list(baseline), list(candidate))
    assert speedup.ci_low < 2.0 < speedup.ci_high
    assert speedup.ci_high - speedup.ci_low > 0.01
    assert speedup.pairs == 300


def test_median_ratio_pairs_the_rounds_both_paths_have():
    from deformer_bench.contracts.stats import median_ratio

    assert median_ratio([30, 30, 30, 999], [10, 10, 10]) == pytest.approx(3.0)


def test_spread_keeps_its_values_and_gives_median_range_and_deviation():
    from deformer_bench.contracts.stats import Spread

    spread = Spread((2.0, 2.1, 1.9))
    assert spread.to_dict() == {"values": [2.0, 2.1, 1.9], "median": 2.0, "min": 1.9, "max": 2.1,
                                "max_deviation": pytest.approx(0.05)}
    with pytest.raises(ValueError):
        Spread(())


def test_spread_warns_only_beyond_five_percent_and_only_with_two_or_more_processes():
    from deformer_bench.contracts.stats import Spread

    assert Spread((2.0, 2.08, 1.95)).warnings("k=4 online speed-up") == []
    [warning] = Spread((2.0, 2.3, 1.95)).warnings("k=4 online speed-up")
    assert "k=4 online speed-up" in warning and "3 timing processes" in warning and "15%" in warning
    assert Spread((2.0,)).warnings("x") == []
