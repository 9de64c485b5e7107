import json
import subprocess
import sys

import pytest

from deformer_bench.cli.common import run_cli
from deformer_bench.cli.train import train_main
from deformer_bench.model import Deformer


def cli(*args):
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.train", *map(str, args)],
                               capture_output=True, text=True, timeout=300)
    return completed.returncode, completed.stdout, completed.stderr


def test_queue_trains_evaluates_and_skips_finished_runs(tiny_queue_runs, capsys):
    queue, runs = tiny_queue_runs
    for name, layer in (("teacher", 0), ("k1-kd-lrs", 1), ("k1-none", 1)):
        scores = json.loads((runs / name / "eval.json").read_text())
        assert scores["layer"] == layer and scores["questions"] == 6 and 0 <= scores["f1"] <= 100
        assert scores["environment"]["git"]["commit"]
        assert scores["model_fingerprint_sha256"] == Deformer.from_pretrained(runs / name / "model").fingerprint()
    student = json.loads((runs / "k1-kd-lrs" / "train_config.json").read_text())["config"]
    assert student["init_dir"] == student["teacher_dir"] == str(runs / "teacher" / "model")
    assert json.loads((runs / "k1-none" / "train_config.json").read_text())["config"]["teacher_dir"] == ""

    logs = {path: path.stat().st_mtime_ns for path in runs.glob("*/train_log.jsonl")}
    capsys.readouterr()
    assert train_main(["--queue", str(queue), "--runs-dir", str(runs), "--quiet"]) == 0
    assert {path: path.stat().st_mtime_ns for path in runs.glob("*/train_log.jsonl")} == logs  # nothing retrained
    assert capsys.readouterr().out.count("F1") == 3


@pytest.mark.parametrize("text, message", [
    ("runs: {a: 1}", "needs a non-empty 'runs' list"),
    ("runs: []", "needs a non-empty 'runs' list"),
    ("{defualts: {train_file: t.json}, runs: [{name: a, gamma: 1, alpha: 0, beta: 0}]}",
     "unknown top-level key(s) 'defualts'"),
    ("{defaults: [train_file, t.json], runs: [{name: a}]}", "'defaults' must be a mapping of settings, found list"),
    ("{evaluation: {dataset: d.json, limt: 5}, runs: [{name: a}]}", "unknown evaluation key(s) 'limt'"),
    ("{evaluation: {dataset: d.json, limit: -1}, runs: [{name: a}]}", "evaluation limit must be a whole number"),
    ("runs: [teacher]", "run 1 must be a mapping"),
    ("{defaults: {train_file: t.json}, runs: [{name: ../a, gamma: 1, alpha: 0, beta: 0}]}", "plain folder name"),
    ("{defaults: {train_file: t.json}, runs: [{name: a, gamma: 1, alpha: 0, beta: 0, checkpoint_every: 0}]}",
     "checkpoint_every must be >= 1"),
    ("{defaults: {train_file: t.json}, runs: [{name: a, gamma: 1, alpha: 0, beta: 0, learning_rate: .nan}]}",
     "learning_rate must be a finite number"),
    ("{defaults: {train_file: t.json}, runs: [{name: a, gamma: 1, alpha: 0, beta: 0}]}",
     "run 'a': train_file t.json is not a file"),
    ("{defaults: {train_file: t.json}, runs: [{name: a, gamma: 1, alpha: 0, beta: 0, init_dir: /x}]}",
     "init_dir are set by the queue"),
    ("{defaults: {train_file: t.json, on: 1}, runs: [{name: a, gamma: 1, alpha: 0, beta: 0}]}",
     "setting names must be text, found True"),
    ("{runs: [{name: a}], 3: x}", "unknown top-level key(s) 3"),
    ("runs: [{name: a, layer: 0, gamma: 1, alpha: 0, beta: 0}]", "missing training settings: train_file"),
    ("{defaults: {train_file: t.json}, runs: [{name: a, gamma: 1, alpha: 0, beta: 0}, {name: a, gamma: 1, alpha: 0, beta: 0}]}",
     "is used twice"),
    ("{defaults: {train_file: t.json}, runs: [{name: a, gamma: 1, alpha: 0, beta: 0, lerning_rate: 1}]}",
     "unknown training settings: lerning_rate"),
    ("{defaults: {train_file: t.json}, runs: [{name: a, layer: 4}]}", "KD and LRS need a teacher"),
    ("runs: [{name: a", "is not valid YAML"),
    ("{records: no/such/folder, runs: [{name: a}]}", "records must be the folder of committed run records"),
    ("{records: [results], runs: [{name: a}]}", "records must be the folder of committed run records"),
    ("{records: '', runs: [{name: a}]}", "records must be the folder of committed run records"),
    ("runs: [{name: a}]\nruns: [{name: b}]\n", "'runs' is given twice (lines 1 and 2)"),
])
def test_bad_queues(tmp_path, text, message):
    queue = tmp_path / "queue.yaml"
    queue.write_text(text)
    code, _, stderr = cli("--queue", queue, "--runs-dir", tmp_path / "runs")
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists()


def test_only_refuses_names_not_in_the_queue(tmp_path, capsys):
    queue = tmp_path / "queue.yaml"
    queue.write_text("{defaults: {train_file: t.json}, runs: [{name: teacher, gamma: 1, alpha: 0, beta: 0}]}")
    argv = ["--queue", str(queue), "--runs-dir", str(tmp_path / "runs"), "--only", "teacher,k4-nnoe"]
    assert run_cli(train_main, argv) == 2
    err = capsys.readouterr().err
    assert "--only names runs not in" in err and "k4-nnoe" in err and "runs there: teacher" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra", [["--epochs", "2"], ["--init", "some/model"], ["--bf16", "false"],
                                   ["--output", "o"]])
def test_queue_refuses_single_run_options(tmp_path, capsys, extra):
    queue = tmp_path / "queue.yaml"
    queue.write_text("{defaults: {train_file: t.json}, runs: [{name: teacher, gamma: 1, alpha: 0, beta: 0}]}")
    assert run_cli(train_main, ["--queue", str(queue), "--runs-dir", str(tmp_path / "runs"), *extra]) == 2
    err = capsys.readouterr().err
    assert extra[0] in err and "set a single run" in err
    assert not (tmp_path / "runs").exists()


def test_queue_options_without_a_queue_are_refused(capsys):
    assert run_cli(train_main, ["--only", "teacher", "--output", "o", "--train-file", "t.json"]) == 2
    assert "belong to a queue" in capsys.readouterr().err


def test_interrupted_training_says_it_resumes(capsys):
    from deformer_bench.cli.train import RESUMES

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_cli(interrupted, [], interrupted=RESUMES) == 130
    err = capsys.readouterr().err
    assert "resume from the last checkpoint" in err and "nothing was written" not in err


def test_later_runs_are_checked_before_the_first_starts(tmp_path, tiny_with_tokenizer, small_train_file, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "b").write_text("a file where run b's folder goes")
    for run_b, message in (("{name: b, init: a, layer: 1, gamma: 1, alpha: 0, beta: 0}", "run's output"),
                           ("{name: b, init: a, layer: 9, gamma: 1, alpha: 0, beta: 0}", "k=9 is outside 0..2")):
        queue = tmp_path / "queue.yaml"
        queue.write_text(f"{{defaults: {{train_file: {small_train_file}, question_len: 16, passage_len: 64, "
                         f"doc_stride: 16, bf16: false}}, runs: [{{name: a, init: {tiny_with_tokenizer}, layer: 0, "
                         f"gamma: 1, alpha: 0, beta: 0}}, {run_b}]}}")
        assert run_cli(train_main, ["--queue", str(queue), "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
        assert message in capsys.readouterr().err
        assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["b"]  # run a never started


def test_a_stale_or_damaged_evaluation_is_redone(tiny_queue_runs, tmp_path, capsys):
    import shutil

    from deformer_bench.cli.train_queue import queue_configs, read_evaluation

    queue, runs = tiny_queue_runs
    copy = tmp_path / "runs"
    shutil.copytree(runs / "teacher", copy / "teacher")
    (name, config, evaluation), *_ = queue_configs(queue, copy)
    path = copy / "teacher" / "eval.json"
    assert read_evaluation(path, evaluation, config.doc_stride)["questions"] == 6
    assert read_evaluation(path, {**evaluation, "limit": 7}, config.doc_stride) is None
    assert "(evaluation limit differ)" in capsys.readouterr().err  # what differs, by name
    path.write_text("[]")
    assert read_evaluation(path, evaluation, config.doc_stride) is None
    assert "evaluating again" in capsys.readouterr().err


def test_a_run_may_not_be_written_where_its_queue_or_evaluation_set_lies(tmp_path, tiny_with_tokenizer,
                                                                          small_train_file, capsys):
    """Issue 22, finding 1: the queue file and the evaluation set are read too; a run folder that holds one is
    refused before any run starts."""
    import shutil

    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "train_config.json").write_text("{}")  # run a, interrupted
    queue = tmp_path / "runs" / "a" / "queue.yaml"
    shutil.copy(small_train_file, tmp_path / "runs" / "a" / "dev.json")
    for evaluation in ("", f", evaluation: {{dataset: {tmp_path / 'runs' / 'a' / 'dev.json'}}}"):
        queue.write_text(f"{{defaults: {{train_file: {small_train_file}, question_len: 16, passage_len: 64, "
                         f"doc_stride: 16, bf16: false}}, runs: [{{name: a, init: {tiny_with_tokenizer}, layer: 0, "
                         f"gamma: 1, alpha: 0, beta: 0}}]{evaluation}}}")
        assert run_cli(train_main, ["--queue", str(queue), "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
        assert "holds the queue file" in capsys.readouterr().err
    shutil.move(queue, tmp_path / "queue.yaml")
    assert run_cli(train_main, ["--queue", str(tmp_path / "queue.yaml"), "--runs-dir", str(tmp_path / "runs"),
                                "--quiet"]) == 2
    assert "holds the evaluation dataset" in capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "runs" / "a").iterdir()) == ["dev.json", "train_config.json"]


@pytest.mark.parametrize("damage", ["cut-off gzip", "a key twice"])
def test_a_damaged_evaluation_set_is_refused_before_the_first_run_trains(tmp_path, tiny_with_tokenizer,
                                                                          small_train_file, capsys, damage):
    """An evaluation set that exists but cannot be read was found only after its run had trained (exit 2 then)."""
    import gzip

    dataset = tmp_path / "dev.json.gz"
    if damage == "cut-off gzip":
        dataset.write_bytes(gzip.compress(small_train_file.read_bytes())[:2000])
    else:
        dataset = tmp_path / "dev.json"
        dataset.write_text(small_train_file.read_text().replace('"version"', '"data": [], "version"', 1))
    queue = tmp_path / "queue.yaml"
    queue.write_text(f"{{defaults: {{train_file: {small_train_file}, question_len: 16, passage_len: 64, doc_stride: 16, "
                     f"bf16: false, max_examples: 2}}, evaluation: {{dataset: {dataset}, limit: 2}}, "
                     f"runs: [{{name: a, init: {tiny_with_tokenizer}, layer: 0, gamma: 1, alpha: 0, beta: 0}}]}}")
    assert run_cli(train_main, ["--queue", str(queue), "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    assert str(dataset) in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # run a never started

