import json

import pytest

from deformer_bench.analysis import time_breakdown
from deformer_bench.bench.flops import layer_flops


def event(cat, name, ts, dur, op=None):
    return {"cat": cat, "name": name, "ts": ts, "dur": dur, **({"args": {"op_name": op}} if op else {})}


def test_kernel_times_skip_the_warmup_runs_and_sum_kernels_by_operator_type():
    trace = [event("Session", "model_run", 0, 100), event("Node", "a_kernel_time", 10, 50, "MatMul"),
             event("Session", "model_run", 200, 100), event("Node", "b_kernel_time", 210, 60, "MatMul"),
             event("Node", "c_kernel_time", 280, 20, "Softmax"), event("Node", "c_fence_before", 279, 1, "Softmax"),
             event("Session", "model_run", 400, 50), event("Node", "d_kernel_time", 410, 30, "MatMul")]
    times = time_breakdown.kernel_times(trace, warmup_runs=1)
    assert times == {"runs": 2, "run_us": 150.0, "kernel_us": 110.0, "by_op_type": {"MatMul": 90, "Softmax": 20}}
    assert time_breakdown.kernel_times(trace, warmup_runs=3)["runs"] == 0


def test_graph_flops_split_the_unsplit_models_layers():
    manifest = {"model": {"num_layers": 6, "hidden_size": 32, "intermediate_size": 64},
                "deformer": {"layer": 4, "question_len": 8, "passage_len": 24}}
    flops = time_breakdown.graph_flops(manifest, batch=2)
    assert flops["full"] == 2 * 6 * layer_flops(32, 32, 64)
    assert flops["lower_question"] == 2 * 4 * layer_flops(8, 32, 64)
    assert flops["upper"] == 2 * 2 * layer_flops(32, 32, 64)
    assert flops["lower_passage"] == 2 * 4 * layer_flops(24, 32, 64)


def test_the_study_on_a_tiny_graph_set_writes_json_markdown_and_plot(tiny_graphs, tmp_path):
    out = tmp_path / "breakdown"
    with pytest.raises(SystemExit) as exit_info:
        time_breakdown.main([str(tiny_graphs), "--processes", "1", "--runs", "2", "--profiled-runs", "2",
                             "--min-time-s", "0", "--out", str(out)])
    assert exit_info.value.code == 0
    result = json.loads((out / "time_breakdown.json").read_text())
    [process] = result["processes"]
    assert {len(values) for values in process["samples_ns"].values()} == {2}
    assert process["profiled"]["upper"]["runs"] == 2 and process["profiled"]["upper"]["by_op_type"]
    summary = result["summary"]
    shares = [summary["graphs"][graph]["online_time_share"] for graph in ("lower_question", "upper")]
    assert sum(shares) == pytest.approx(1.0)
    assert result["environment"]["command"].startswith("python -m deformer_bench.analysis.time_breakdown")
    assert "| lower_question |" in (out / "time_breakdown.md").read_text()
    assert (out / "time_breakdown.png").stat().st_size > 0


def test_an_existing_out_is_refused_before_any_work(tiny_graphs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        time_breakdown.main([str(tiny_graphs), "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "already exists" in capsys.readouterr().err


def test_a_folder_that_is_no_graph_set_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        time_breakdown.main([str(tmp_path / "folder"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "manifest.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    # issue 22, finding 14: counts and durations that would run until killed
    (["--processes", "99999999999999999999"], "argument --processes: must be at most 100"),
    (["--runs", "1000001"], "argument --runs: must be at most 100,000"),
    (["--profiled-runs", "99999999999999999999"], "argument --profiled-runs: must be at most 100,000"),
    (["--min-time-s", "1e9"], "argument --min-time-s: must be a number of seconds from 0 to 3600"),
    (["--min-time-s", "inf"], "argument --min-time-s: must be a number of seconds from 0 to 3600"),
])
def test_absurd_counts_and_durations_are_refused(tiny_graphs, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        time_breakdown.main([str(tiny_graphs), "--out", str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_may_not_lie_inside_the_graph_set(tiny_graphs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        time_breakdown.main([str(tiny_graphs), "--processes", "1", "--runs", "2", "--profiled-runs", "2",
                             "--out", str(tiny_graphs / "breakdown")])
    assert exit_info.value.code == 2 and "lies inside the graph set" in capsys.readouterr().err
    assert not (tiny_graphs / "breakdown").exists()
