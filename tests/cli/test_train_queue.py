"""The queue's committed records (`records:`): finished runs reported from their records, not trained again."""

import json

import pytest

from deformer_bench.cli.common import run_cli
from deformer_bench.cli.train import train_main


def record_runs(runs, records, names, edit=None):
    """Commit-style records of finished runs: RECORDS/NAME/{train_config.json, eval.json}, nothing else."""
    import shutil

    for name in names:
        (records / name).mkdir(parents=True)
        for file in ("train_config.json", "eval.json"):
            shutil.copy(runs / name / file, records / name / file)
    if edit:
        path, key, value = edit
        record = json.loads(path.read_text())
        (record["config"] if "config" in record else record)[key] = value
        path.write_text(json.dumps(record))


def queue_with_records(tiny_queue_runs, tmp_path, records):
    queue, _ = tiny_queue_runs
    path = tmp_path / "queue.yaml"
    path.write_text(f"records: {records}\n" + queue.read_text())
    return path


def trained(runs):
    return sorted(path.parent.name for path in runs.glob("*/DONE"))


def test_runs_in_the_committed_records_are_not_trained_again(tiny_queue_runs, tmp_path, capsys):
    """On a new machine the runs folder is gone; a queue with `records:` skips the runs whose records match
    (without it, hours of finished runs were trained again), and says so with their scores."""
    _, runs = tiny_queue_runs
    record_runs(runs, tmp_path / "records", ["teacher", "k1-kd-lrs", "k1-none"])
    queue = queue_with_records(tiny_queue_runs, tmp_path, tmp_path / "records")
    capsys.readouterr()
    assert train_main(["--queue", str(queue), "--runs-dir", str(tmp_path / "new-runs"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("not trained again") == 3 and trained(tmp_path / "new-runs") == []
    f1 = json.loads((runs / "k1-none" / "eval.json").read_text())["f1"]
    assert f"k1-none: F1 {f1:.2f}" in out


def test_a_recorded_run_whose_model_a_later_run_needs_is_trained(tiny_queue_runs, tmp_path, capsys):
    _, runs = tiny_queue_runs
    record_runs(runs, tmp_path / "records", ["teacher", "k1-kd-lrs"])
    queue = queue_with_records(tiny_queue_runs, tmp_path, tmp_path / "records")
    assert train_main(["--queue", str(queue), "--runs-dir", str(tmp_path / "new-runs"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert trained(tmp_path / "new-runs") == ["k1-none", "teacher"]  # k1-none starts from the teacher's model
    assert "a later run starts from its model" in captured.err and captured.out.count("not trained again") == 1


@pytest.mark.parametrize("file, key, value, differ", [
    ("train_config.json", "beta", 7.0, "beta differ"),
    ("train_config.json", "teacher_dir", "some/other/teacher", "teacher_dir differ"),
    ("train_config.json", "train_file", "elsewhere/train-v2.0.json", "train_file differ"),
    ("eval.json", "limit", 5, "evaluation limit differ"),
    ("eval.json", "dataset", "elsewhere/dev-v2.0.json", "evaluation dataset differ"),
])
def test_a_record_of_other_settings_is_trained(tiny_queue_runs, tmp_path, capsys, file, key, value, differ):
    _, runs = tiny_queue_runs
    records = tmp_path / "records"
    record_runs(runs, records, ["teacher"], edit=(records / "teacher" / file, key, value))
    queue = queue_with_records(tiny_queue_runs, tmp_path, records)
    argv = ["--queue", str(queue), "--runs-dir", str(tmp_path / "new-runs"), "--only", "teacher", "--quiet"]
    assert train_main(argv) == 0
    captured = capsys.readouterr()
    assert trained(tmp_path / "new-runs") == ["teacher"] and differ in captured.err
    assert "not trained" not in captured.out


def test_model_references_survive_another_venv_and_runs_dir(tmp_path):
    from deformer_bench.cli.train_queue import model_reference
    from deformer_bench.model import default_model_dir

    other_venv = tmp_path / ".venv/lib/python3.11/site-packages" / default_model_dir().parent.name / "model"
    assert model_reference(other_venv, tmp_path / "runs") == model_reference(default_model_dir(), "runs")
    not_the_package = tmp_path / "my-finetunes" / default_model_dir().parent.name / "model"
    assert model_reference(not_the_package, "runs") != model_reference(default_model_dir(), "runs")
    assert model_reference("/old/runs/teacher/model", "/old/runs") == model_reference("runs/teacher/model", "runs")
    assert model_reference("reference/teacher/model", "runs") != model_reference("runs/teacher/model", "runs")
    assert model_reference("", "runs") == "none"


@pytest.mark.parametrize("damage", ["eval.json cut off", "config a list", "a file where the folder goes",
                                    "eval.json missing", "f1 as text", "a dangling link"])
def test_a_damaged_record_is_refused_before_any_run_trains(tiny_queue_runs, tmp_path, capsys, damage):
    import shutil

    _, runs = tiny_queue_runs
    records = tmp_path / "records"
    record_runs(runs, records, ["teacher", "k1-kd-lrs", "k1-none"])
    if damage == "eval.json cut off":
        (records / "k1-none" / "eval.json").write_text((runs / "k1-none" / "eval.json").read_text()[:80])
    elif damage == "config a list":
        (records / "k1-none" / "train_config.json").write_text('{"config": []}')
    elif damage == "a file where the folder goes":
        shutil.rmtree(records / "k1-none")
        (records / "k1-none").write_text("")
    elif damage == "f1 as text":
        record = json.loads((records / "k1-none" / "eval.json").read_text())
        (records / "k1-none" / "eval.json").write_text(json.dumps({**record, "f1": str(record["f1"])}))
    elif damage == "a dangling link":
        shutil.rmtree(records / "k1-none")
        (records / "k1-none").symlink_to(tmp_path / "gone")
    else:
        (records / "k1-none" / "eval.json").unlink()
    queue = queue_with_records(tiny_queue_runs, tmp_path, records)
    argv = ["--queue", str(queue), "--runs-dir", str(tmp_path / "new-runs"), "--quiet"]
    assert run_cli(train_main, argv) == 2
    err = capsys.readouterr().err
    assert "the record of run 'k1-none'" in err and "move" in err and "Traceback" not in err
    assert trained(tmp_path / "new-runs") == []


def test_a_record_is_not_counted_when_the_run_it_starts_from_is_trained_anew(tiny_queue_runs, tmp_path, capsys):
    """The students' records say "started from run teacher"; a teacher trained again with other settings makes
    them stale, so they are trained too."""
    _, runs = tiny_queue_runs
    records = tmp_path / "records"
    record_runs(runs, records, ["teacher", "k1-kd-lrs", "k1-none"],
                edit=(records / "teacher" / "train_config.json", "learning_rate", 0.5))
    queue = queue_with_records(tiny_queue_runs, tmp_path, records)
    assert train_main(["--queue", str(queue), "--runs-dir", str(tmp_path / "new-runs"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert trained(tmp_path / "new-runs") == ["k1-kd-lrs", "k1-none", "teacher"]
    assert captured.err.count("starts from run teacher, which is not recorded or finished") == 2
    assert "not trained again" not in captured.out


def test_a_record_made_on_another_machine_counts(tiny_queue_runs, tmp_path, capsys):
    """Another runs folder, another spelling of the evaluation set's folder: the same run."""
    _, runs = tiny_queue_runs
    records = tmp_path / "records"
    record_runs(runs, records, ["teacher"])
    for file, key in (("eval.json", "dataset"), ("train_config.json", "train_file")):
        record = json.loads((records / "teacher" / file).read_text())
        part = record["config"] if "config" in record else record
        part[key] = "/another/machine/data/" + part[key].rsplit("/", 1)[-1]
        (records / "teacher" / file).write_text(json.dumps(record))
    queue = queue_with_records(tiny_queue_runs, tmp_path, records)
    argv = ["--queue", str(queue), "--runs-dir", str(tmp_path / "new-runs"), "--only", "teacher", "--quiet"]
    assert train_main(argv) == 0
    assert "not trained again" in capsys.readouterr().out and trained(tmp_path / "new-runs") == []


def test_only_refuses_a_run_whose_source_run_is_neither_finished_nor_selected(tiny_queue_runs, tmp_path, capsys):
    queue, _ = tiny_queue_runs
    argv = ["--queue", str(queue), "--runs-dir", str(tmp_path / "new-runs"), "--only", "k1-none", "--quiet"]
    assert run_cli(train_main, argv) == 2
    err = capsys.readouterr().err
    assert "start from the model of run(s) teacher" in err and "--only teacher,k1-none" in err
    assert trained(tmp_path / "new-runs") == []


@pytest.mark.parametrize("changed", [False, True])
def test_a_record_whose_init_model_was_replaced_at_the_same_path_is_trained(tiny_queue_runs, tmp_path, capsys,
                                                                           changed):
    """Paths alone cannot tell a model retrained into the same folder (a new reference/teacher/model): a record
    names the fingerprints of the weights it started from and distilled from, compared with those there now."""
    import shutil

    import torch

    from deformer_bench.model import load_qa_model

    queue, runs = tiny_queue_runs
    init = json.loads((runs / "teacher" / "train_config.json").read_text())["config"]["init_dir"]
    moved_init = tmp_path / "init"
    shutil.copytree(init, moved_init)
    if changed:
        qa_model, _ = load_qa_model(moved_init)
        with torch.no_grad():
            next(qa_model.parameters()).add_(0.01)
        qa_model.save_pretrained(moved_init)
    records = tmp_path / "records"
    record_runs(runs, records, ["teacher"], edit=(records / "teacher" / "train_config.json", "init_dir",
                                                  str(moved_init)))
    path = tmp_path / "queue.yaml"
    path.write_text(f"records: {records}\n" + queue.read_text().replace(init, str(moved_init)))
    argv = ["--queue", str(path), "--runs-dir", str(tmp_path / "new-runs"), "--only", "teacher", "--quiet"]
    assert train_main(argv) == 0
    captured = capsys.readouterr()
    assert trained(tmp_path / "new-runs") == (["teacher"] if changed else [])
    assert ("init weights differ" in captured.err) == changed


def test_the_teacher_weights_are_compared_too_and_a_malformed_fingerprint_is_refused(tiny_queue_runs, tmp_path,
                                                                                      capsys):
    import shutil
    from types import SimpleNamespace

    import torch

    from deformer_bench.cli.train_queue import recorded_fingerprints, weight_differences
    from deformer_bench.model import load_qa_model, weights_fingerprint

    _, runs = tiny_queue_runs
    teacher = tmp_path / "teacher"
    shutil.copytree(runs / "teacher" / "model", teacher)
    record = json.loads((runs / "k1-kd-lrs" / "train_config.json").read_text())
    recorded = recorded_fingerprints(record)
    assert recorded["teacher"] == weights_fingerprint(load_qa_model(teacher)[0])  # train() and the queue agree
    config = SimpleNamespace(init_dir=str(tmp_path / "not-here"), teacher_dir=str(teacher))
    assert weight_differences(recorded, config, {}, "the record") == []
    qa_model, _ = load_qa_model(teacher)
    with torch.no_grad():
        next(qa_model.parameters()).add_(0.01)
    qa_model.save_pretrained(teacher)
    assert weight_differences(recorded, config, {}, "the record") == ["teacher weights"]
    (teacher / "model.safetensors").write_bytes(b"cut")
    with pytest.raises(Exception, match="the teacher model .* cannot be read"):
        weight_differences(recorded, config, {}, "the record")

    records = tmp_path / "records"
    record_runs(runs, records, ["teacher"])
    path = records / "teacher" / "train_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "init_fingerprint_sha256": 0}))
    queue = queue_with_records(tiny_queue_runs, tmp_path, records)
    argv = ["--queue", str(queue), "--runs-dir", str(tmp_path / "new-runs"), "--only", "teacher", "--quiet"]
    assert run_cli(train_main, argv) == 2
    assert "init_fingerprint_sha256 is 0, not a sha256" in capsys.readouterr().err
    assert trained(tmp_path / "new-runs") == []
