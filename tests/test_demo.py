import json
import subprocess
import sys


def demo(*args, cwd=None):
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.demo", *map(str, args)], capture_output=True,
                               text=True, timeout=600, cwd=cwd)
    return completed.returncode, completed.stdout, completed.stderr


def test_the_demo_answers_through_the_commands_and_keeps_its_graphs(tiny_queue_runs, small_train_file, tmp_path):
    student = tiny_queue_runs[1] / "k1-kd-lrs"  # a run directory: its model/ is found
    code, stdout, stderr = demo("--model", student, "--dataset", small_train_file, "--passages", "1",
                                "--work", tmp_path / "work")
    assert code == 0, stderr
    assert "$ " in stdout and "deformer-export" in stdout and "deformer-answer" in stdout
    questions = [json.loads(line) for line in (tmp_path / "work" / "questions.jsonl").read_text().splitlines()]
    passages = [json.loads(line) for line in (tmp_path / "work" / "passages.jsonl").read_text().splitlines()]
    assert len(passages) == 1 and len(questions) > 5 and {q["passage_id"] for q in questions} == {"p0"}
    answers = json.loads((tmp_path / "work" / "answers.json").read_text())
    assert set(answers) == {q["id"] for q in questions}
    assert stdout.count("\nQ: ") == len(questions) and f"{len(questions)} questions about 1 passages: EM" in stdout
    graphs = list((tmp_path / "work").glob("graphs-*"))
    assert len(graphs) == 1 and (graphs[0] / "manifest.json").is_file()

    # a second run reuses the graphs and the cache: no export
    code, stdout, stderr = demo("--model", student / "model", "--dataset", small_train_file, "--passages", "1",
                                "--work", tmp_path / "work")
    assert code == 0, stderr
    assert "deformer-export" not in stdout and "deformer-answer" in stdout
    # more passages (a second article): the same graphs, a cache of their own
    document = json.loads(small_train_file.read_text())
    article = document["data"][0]
    second = {**article, "title": "Another", "paragraphs": article["paragraphs"][1:2]}
    article = {**article, "paragraphs": article["paragraphs"][:1]}
    document["data"] = [article, second]
    (tmp_path / "two.json").write_text(json.dumps(document))
    code, stdout, stderr = demo("--model", student, "--dataset", tmp_path / "two.json", "--passages", "2",
                                "--work", tmp_path / "work")
    assert code == 0, stderr
    assert "deformer-export" not in stdout and len(list((tmp_path / "work").glob("cache-*"))) == 2


def test_the_demo_refuses_work_inside_the_model_or_on_a_file(tiny_queue_runs, small_train_file, tmp_path):
    student = tiny_queue_runs[1] / "k1-kd-lrs"
    code, _, stderr = demo("--model", student, "--dataset", small_train_file, "--work", student / "demo")
    assert code == 2 and "lies inside the model directory" in stderr and not (student / "demo").exists()
    (tmp_path / "afile").write_text("x")
    code, _, stderr = demo("--model", student, "--dataset", small_train_file, "--work", tmp_path / "afile")
    assert code == 2 and "is a file" in stderr and "Traceback" not in stderr


def test_the_demo_without_its_model_says_what_to_do(tmp_path):
    code, stdout, stderr = demo("--model", tmp_path / "nothing", "--work", tmp_path / "work", cwd=tmp_path)
    assert code == 2 and "not a trained model directory" in stderr and "fix:" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "work").exists()
