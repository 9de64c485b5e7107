"""deformer-bench --scenario end to end on tiny graph sets, through LoadGen itself: each scenario's figures checked
against the files LoadGen wrote."""

import csv
import json
from pathlib import Path

import pytest

from .conftest import detail_values, run_bench, scenario_argv, summary_verdict

pytest.importorskip("mlperf_loadgen")

LIMIT = 6


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, scenario_graphs, scenario_caches, small_train_file) -> Path:
    """All three scenarios, the three kinds of system, real lengths, 6 questions."""
    out = tmp_path_factory.mktemp("scenario-results")
    argv = scenario_argv(scenario_graphs, [scenario_caches["float32"]], small_train_file, out, "--scenario",
                         "single-stream,server,offline", "--systems", "unsplit,deformer,deformer-miss", "--variant",
                         "float32", "--lengths", "real", "--limit", str(LIMIT))
    assert run_bench(argv) == 0
    [directory] = list(out.iterdir())
    return directory


def results_of(directory: Path) -> dict:
    return json.loads((directory / "results.json").read_text())


def test_the_results_folder_is_named_by_date_profile_and_model(quick_run):
    name = quick_run.name
    assert len(name) <= 60 and name[:4].isdigit() and "-server-cpu-quick-unsplit-deformer" in name
    for file in ("report.md", "results.json", "results.csv", "latency_cdf.png", "server_qps_p99.png",
                 "f1_throughput.png"):
        assert (quick_run / file).is_file(), file


def test_accuracy_is_loadgens_log_scored_with_the_squad_metric(quick_run, small_train_file):
    from deformer_bench.scenarios.samples import choose_samples
    from deformer_bench.squad.metric import evaluate

    results = results_of(quick_run)
    assert [run["system"]["label"] for run in results["runs"]] == ["unsplit float32", "deformer float32",
                                                                   "deformer-miss float32"]
    chosen = list(choose_samples(small_train_file, LIMIT, 0).examples)  # LoadGen's sample i is chosen[i]
    answers = {}
    for run in results["runs"]:
        log_dir = quick_run / run["accuracy"]["loadgen"]["log_dir"]
        entries = json.loads((log_dir / "mlperf_log_accuracy.json").read_text())
        assert sorted(entry["qsl_idx"] for entry in entries) == list(range(LIMIT))  # each sample answered once
        predictions = {chosen[entry["qsl_idx"]].id: bytes.fromhex(entry["data"]).decode() for entry in entries}
        scores = evaluate(chosen, predictions)
        assert run["accuracy"]["f1"] == pytest.approx(scores["f1"])
        assert run["accuracy"]["exact_match"] == pytest.approx(scores["exact_match"])
        assert detail_values(log_dir)["effective_test_mode"] == "AccuracyOnly"
        answers[run["system"]["label"]] = predictions
    # the cache holds exactly what lower_passage computes: a hit and a miss give the same answers
    assert answers["deformer float32"] == answers["deformer-miss float32"]
    assert results["runs"][1]["cache_misses"] == 0


def test_single_stream_p90_and_latencies_are_loadgens(quick_run):
    for run in results_of(quick_run)["runs"]:
        single = run["single_stream"]
        log_dir = quick_run / single["log_dir"]
        values = detail_values(log_dir)
        assert values["effective_scenario"] == "SingleStream" and values["effective_target_latency_percentile"] == 0.9
        assert single["latency_ns"]["90.00"] == values["result_90.00_percentile_latency_ns"]
        latencies = sorted(single["latencies_ns"])  # from LoadGen's trace: its own p90 is their 90th percentile
        assert len(latencies) == values["result_query_count"]
        assert latencies[int(len(latencies) * 0.9)] == values["result_90.00_percentile_latency_ns"]
        # --quick caps the run far below mlperf.conf's 600 s minimum: LoadGen itself says INVALID
        assert values["effective_min_duration_ms"] == 600000 and values["effective_max_duration_ms"] == 2000
        assert single["verdict"] == values["result_validity"] == summary_verdict(log_dir) == "INVALID"
        assert not (log_dir / "mlperf_log_trace.json").exists()


def test_offline_throughput_is_loadgens(quick_run):
    for run in results_of(quick_run)["runs"]:
        offline = run["offline"]
        values = detail_values(quick_run / offline["log_dir"])
        assert values["effective_scenario"] == "Offline"
        assert offline["throughput"]["samples_per_second"] == values["result_samples_per_second"] > 0
        assert values["effective_min_query_count"] == 1 and values["generated_samples_per_query"] == LIMIT
        assert offline["verdict"] == summary_verdict(quick_run / offline["log_dir"]) == "INVALID"


def test_server_search_runs_loadgen_at_each_qps_against_the_bound(quick_run):
    results = results_of(quick_run)
    reference = results["runs"][0]
    bound = results["latency_bound"]
    # the default bound: 3x the unsplit float32 system's SingleStream p90, from its own run
    assert bound["ms"] == pytest.approx(3 * reference["single_stream"]["latency_ns"]["90.00"] / 1e6)
    for run in results["runs"]:
        server = run["server"]
        assert server["bound_ms"] == bound["ms"] and 1 <= len(server["trials"]) <= 5
        for trial in server["trials"]:
            values = detail_values(quick_run / trial["result"]["log_dir"])
            assert values["effective_scenario"] == "Server"
            # LoadGen logs 6 significant digits
            assert values["effective_target_qps"] == pytest.approx(trial["target_qps"], rel=1e-5)
            assert values["effective_target_latency_ns"] == round(bound["ms"] * 1e6)
            assert trial["meets_bound"] == values["result_perf_constraints_met"]
            assert not trial["confirmation"]  # --quick: no full-length confirmation
        met = [trial["target_qps"] for trial in server["trials"] if trial["meets_bound"]]
        assert server["best_qps"] == (max(met) if met else None)


def test_report_and_csv_come_from_the_saved_results(quick_run):
    from deformer_bench.scenarios.report import write_report

    report = (quick_run / "report.md").read_text()
    assert "Functional check only (--quick)" in report and "INVALID" in report
    cpu = results_of(quick_run)["environment"]["cpu"]  # the CPU as the run read it, flags included (VNNI, bf16)
    flags = ", ".join(cpu["flags"]) or "none"
    assert f"- machine: {cpu['model']} ({cpu['logical_cores']} logical cores, flags {flags})" in report
    assert "gate 99% met" in report
    rows = list(csv.DictReader((quick_run / "results.csv").open()))
    assert [row["system"] for row in rows] == ["unsplit float32", "deformer float32", "deformer-miss float32"]
    assert all(row["quick"] == "True" for row in rows)
    (quick_run / "report.md").unlink()
    write_report(quick_run)  # redrawn from results.json alone
    assert (quick_run / "report.md").read_text() == report


def test_a_bound_no_qps_meets_is_a_result(tmp_path, scenario_graphs, small_train_file):
    argv = scenario_argv(scenario_graphs, [], small_train_file, tmp_path, "--scenario", "server", "--systems",
                         "unsplit", "--variant", "float32", "--lengths", "real", "--limit", "3",
                         "--latency-bound-ms", "0.001")
    assert run_bench(argv) == 0
    [directory] = list(tmp_path.iterdir())
    server = results_of(directory)["runs"][0]["server"]
    assert server["best_qps"] is None and server["outcome"].startswith("no QPS met the bound")
    assert not any(trial["meets_bound"] for trial in server["trials"])
    assert results_of(directory)["latency_bound"]["source"] == "--latency-bound-ms"
    assert "| none |" in (directory / "report.md").read_text()


def test_real_and_fixed_lengths_are_both_scored(tmp_path, scenario_graphs, scenario_caches, small_train_file):
    argv = scenario_argv(scenario_graphs, list(scenario_caches.values()), small_train_file, tmp_path, "--scenario",
                         "offline", "--limit", "4")  # default variants: float32 and int8-arm64
    assert run_bench(argv) == 0
    [directory] = list(tmp_path.iterdir())
    results = results_of(directory)
    labels = [(run["system"]["label"], run["lengths"]) for run in results["runs"]]
    assert labels == [(label, lengths) for lengths in ("real", "fixed") for label in
                      ("unsplit float32", "unsplit int8-arm64", "deformer float32", "deformer int8-arm64")]
    int8 = next(run for run in results["runs"] if run["system"]["label"] == "deformer int8-arm64")
    assert int8["passage_cache"]["variant"] == "int8-arm64"
    assert int8["passage_cache"]["read"] == "beside lower_question"  # the server's read ahead, recorded
    for row in results["layout"]:  # the layouts agree: the same answers at real and at fixed lengths
        assert row["answers_differing"] == 0 and row["f1_real_minus_fixed"] == 0
    assert "Real lengths keep each model's layout" in (directory / "report.md").read_text()


def test_a_results_folder_name_stays_within_60_characters(tmp_path):
    from deformer_bench.files import new_results_folder  # one naming rule for every results folder

    first = new_results_folder(tmp_path, "server-cpu-quick", "teacher+" + "a-very-long-graph-set-name" * 4)
    assert len(first.name) <= 60 and first.name.startswith(first.name[:10] + "-server-cpu-quick-teacher-a-very")
    first.mkdir()
    second = new_results_folder(tmp_path, "server-cpu-quick", "teacher+" + "a-very-long-graph-set-name" * 4)
    assert second.name == first.name + "-2" and len(second.name) <= 60


def test_max_duration_sizes_offlines_one_query_to_about_the_cap():
    """--max-duration-s S without --quick: Offline's one query holds about S x the accuracy run's rate samples, never
    fewer than every sample once; without the cap, enough to outlast LoadGen's 600 s minimum."""
    from types import SimpleNamespace

    from deformer_bench.scenarios.run import SystemMeasurement

    def expected_qps(max_duration_s, quick=False, samples=10):
        measurement = SimpleNamespace(request=SimpleNamespace(quick=quick, max_duration_s=max_duration_s),
                                      samples=[None] * samples)
        return SystemMeasurement.offline_expected_qps(measurement, 50.0)

    query_samples = lambda qps: 1.1 * 600 * qps  # how LoadGen sizes Offline's query (at least its minimum count)
    assert query_samples(expected_qps(120)) == pytest.approx(120 * 50.0)  # lasts about 120 s at 50 samples/s
    assert query_samples(expected_qps(10_000)) == pytest.approx(600 * 50.0)  # a cap past the minimum: the minimum
    assert query_samples(expected_qps(None)) > 600 * 50.0  # uncapped: outlasts the minimum, so it can be VALID
    assert query_samples(expected_qps(120, quick=True)) < 10  # --quick: below the minimum count, one pass


def test_a_capped_offline_run_is_short_and_loadgen_calls_it_invalid(tmp_path, scenario_graphs, small_train_file):
    argv = scenario_argv(scenario_graphs, [], small_train_file, tmp_path, "--scenario", "offline", "--systems",
                         "unsplit", "--variant", "float32", "--lengths", "real", "--limit", "3", "--max-duration-s",
                         "0.5")
    argv.remove("--quick")
    assert run_bench(argv) == 0
    [directory] = list(tmp_path.iterdir())
    run = results_of(directory)["runs"][0]
    values = detail_values(directory / run["offline"]["log_dir"])
    expected = run["warmup"]["offline_expected_qps"]
    assert expected == pytest.approx(run["warmup"]["accuracy_run_samples_per_s"] * 0.5 / (1.1 * 600))
    assert values["effective_min_duration_ms"] == 600000  # LoadGen's minimum untouched
    assert values["generated_samples_per_query"] == pytest.approx(max(3, 1.1 * 600 * expected), abs=1)
    assert run["offline"]["verdict"] == summary_verdict(directory / run["offline"]["log_dir"]) == "INVALID"
    assert "Offline's one query sized to last about as long" in (directory / "report.md").read_text()
