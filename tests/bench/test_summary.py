import pytest

from deformer_bench.bench.summary import few_processes_warning, headline_check, summarise_batch, with_peak_above_load
from deformer_bench.contracts.protocol import MemoryResult, TimingResult

MS = 1_000_000


def timing(unsplit_ms, online_ms, rounds=5, capped=False, pid=1):
    return TimingResult(samples_ns={"unsplit": [unsplit_ms * MS] * rounds, "online": [online_ms * MS] * rounds,
                                    "passage_precompute": [5 * MS] * rounds},
                        stopped_by_time_cap=capped, load_s=0.1, pid=pid)


def memory(peak=120.0, loaded=100.0, excludes=True):
    return {path: MemoryResult(path=path, iterations=1, peak_rss_mb=peak, rss_after_load_mb=loaded,
                               peak_excludes_loading=excludes)
            for path in ("unsplit", "online", "passage_precompute")}


def test_each_process_keeps_its_samples_and_its_own_figures():
    record = summarise_batch("m k=1 batch 1", 1, [timing(30, 10, pid=11), timing(33, 10, pid=12),
                                                  timing(30, 12, pid=13)], memory())
    processes = record["processes"]
    assert [process["pid"] for process in processes] == [11, 12, 13]
    assert processes[1]["samples_ns"]["unsplit"] == [33 * MS] * 5
    assert processes[1]["p50_ms"] == {"unsplit": 33.0, "online": 10.0, "passage_precompute": 5.0}
    assert [process["speedup_vs_unsplit"]["online"] for process in processes] == pytest.approx([3.0, 3.3, 2.5])


def test_across_processes_gives_the_median_and_range_beside_the_pooled_ci():
    record = summarise_batch("m k=1 batch 1", 1, [timing(30, 10), timing(33, 10), timing(30, 12)], memory())
    across = record["across_processes"]
    assert across["count"] == 3
    online = across["speedup_vs_unsplit"]["online"]
    assert (online["median"], online["min"], online["max"]) == pytest.approx((3.0, 2.5, 3.3))
    assert online["values"] == pytest.approx([3.0, 3.3, 2.5])
    assert (across["p50_ms"]["unsplit"]["min"], across["p50_ms"]["unsplit"]["max"]) == (30.0, 33.0)
    pooled = record["speedup_vs_unsplit"]["online"]
    assert pooled["pairs"] == 15 and pooled["ratio"] == pytest.approx(3.0)
    assert record["latency"]["unsplit"]["count"] == 15


def test_a_speedup_spread_beyond_five_percent_is_warned_about_and_a_tight_one_is_not():
    spread = summarise_batch("m k=1 batch 1", 1, [timing(30, 10), timing(33, 10), timing(30, 12)], memory())
    assert any("m k=1 batch 1 online speed-up: the 3 timing processes disagree" in warning
               for warning in spread["warnings"])
    tight = summarise_batch("m k=1 batch 1", 1, [timing(30, 10), timing(31, 10), timing(30, 10)], memory())
    assert not any("disagree" in warning for warning in tight["warnings"])


def test_a_capped_process_is_named_in_its_warning():
    record = summarise_batch("case", 1, [timing(30, 10), timing(30, 10, capped=True)], memory())
    assert "case process 2: stopped by max_time_s before min_count was reached" in record["warnings"]


@pytest.mark.parametrize("peak, loaded, excludes, above", [
    (120.0, 100.0, True, 20.0),
    (120.0, None, False, None),  # macOS without a current RSS
    (120.0, 100.0, False, None),  # a lifetime peak: loading included, so the difference would mislead
    (None, None, False, None),
])
def test_peak_above_load_only_where_the_peak_excludes_loading(peak, loaded, excludes, above):
    record = with_peak_above_load({"peak_rss_mb": peak, "rss_after_load_mb": loaded, "peak_excludes_loading": excludes})
    assert record["peak_above_load_mb"] == above


def test_headline_needs_three_processes_a_quiet_machine_and_agreeing_processes():
    tight = {"batches": [summarise_batch("c", 1, [timing(30, 10)] * 3, memory())]}
    loose = {"batches": [summarise_batch("c", 1, [timing(30, 10), timing(33, 10), timing(30, 12)], memory())]}
    assert headline_check("server-cpu", 3, {"quiet": True}, [tight]) == {"ok": True, "reasons": []}
    reasons = headline_check("server-cpu+quick", 1, {"quiet": False}, [loose])["reasons"]
    assert len(reasons) == 4
    assert "--quick" in reasons[0] and "at least 3" in reasons[1] and "not quiet" in reasons[2]
    assert "spread more than 5%" in reasons[3]


def test_too_few_processes_are_said_in_one_line_in_the_headline_and_the_warnings():
    assert few_processes_warning(3) is None
    line = few_processes_warning(2)
    assert line.startswith("2 timing process(es) per case: too few") and "(--processes)" in line
    assert line in headline_check("server-cpu", 2, {"quiet": True}, [])["reasons"]
