import json
import subprocess
import sys

import pytest

from tests.conftest import SQUAD_DIR

DEV = SQUAD_DIR / "dev-v1.1.json.gz"


def cli(*args):
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.eval", *map(str, args)],
                               capture_output=True, text=True, timeout=300)
    return completed.returncode, completed.stdout, completed.stderr


def test_model_directory_without_a_tokenizer(tiny_model_dir):
    code, _, stderr = cli("--dataset", DEV, "--model", tiny_model_dir, "--layer", "1", "--question-len", "8",
                          "--passage-len", "24", "--limit", "2", "--quiet")
    assert code == 2 and "has no tokenizer" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("content, message", [("[1, 2]", "JSON object"), ("{bad", "is not valid JSON")])
def test_bad_predictions_files(tmp_path, content, message):
    path = tmp_path / "pred.json"
    path.write_text(content)
    code, _, stderr = cli("--dataset", DEV, "--predictions", path)
    assert code == 2 and message in stderr and "Traceback" not in stderr


def test_malformed_dataset_names_the_question(tmp_path):
    document = {"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "q9", "question": "?"}]}]}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    (tmp_path / "pred.json").write_text("{}")
    code, _, stderr = cli("--dataset", path, "--predictions", tmp_path / "pred.json")
    assert code == 2 and "question 'q9'" in stderr and "Traceback" not in stderr


def test_pytorch_and_onnx_agree_and_predictions_score_the_same(tmp_path, tiny_queue_runs, tiny_student_graphs,
                                                              small_train_file):
    student_dir = tiny_queue_runs[1] / "k1-kd-lrs" / "model"

    def evaluate(*args):  # the tiny queue's passages are 64 tokens: a 16-token stride, as it trained with
        stride = [] if "--predictions" in args else ["--doc-stride", "16"]
        code, stdout, stderr = cli("--dataset", small_train_file, *args, *stride, "--quiet")
        assert code == 0, stderr
        return json.loads(stdout), stderr

    pytorch, _ = evaluate("--model", student_dir, "--write-predictions", tmp_path / "pred.json")
    onnx, _ = evaluate("--model", student_dir, "--onnx", tiny_student_graphs, "--output", tmp_path / "onnx.json")
    assert pytorch["backend"] == "pytorch" and onnx["backend"] == "onnxruntime"
    assert abs(pytorch["f1"] - onnx["f1"]) < 0.1
    record = json.loads((tmp_path / "onnx.json").read_text())
    assert record["f1"] == onnx["f1"] and record["deformer"]["layer"] == 1
    assert record["model_fingerprint_sha256"] == record["graph_set"]["manifest"]["model"]["fingerprint_sha256"]
    assert "--onnx" in record["environment"]["command"] and record["environment"]["packages"]["onnxruntime"]

    assert record["passage_cache"]["distinct_windows"] < record["windows"]  # 4 paragraphs, many questions each

    # a kept passage cache: built by the first evaluation, reused by the second, same scores
    built, _ = evaluate("--model", student_dir, "--onnx", tiny_student_graphs, "--passage-cache", tmp_path / "cache")
    reused, _ = evaluate("--model", student_dir, "--onnx", tiny_student_graphs, "--passage-cache", tmp_path / "cache")
    assert built["passage_cache"]["built"] and not reused["passage_cache"]["built"]
    assert built["f1"] == reused["f1"] == onnx["f1"]
    subset, _ = evaluate("--model", student_dir, "--onnx", tiny_student_graphs, "--passage-cache", tmp_path / "cache",
                         "--limit", "3")  # three questions on the first paragraph: they share its windows
    assert subset["windows"] == 3 * subset["passage_cache"]["distinct_windows"]
    assert subset["passage_cache"]["cache_windows"] == built["passage_cache"]["distinct_windows"] > 1

    scored, _ = evaluate("--predictions", tmp_path / "pred.json")
    assert scored == {"exact_match": pytorch["exact_match"], "f1": pytorch["f1"]}
    predictions = json.loads((tmp_path / "pred.json").read_text())
    predictions.pop(next(iter(predictions)))
    predictions["unknown-id"] = "x"
    (tmp_path / "pred2.json").write_text(json.dumps(predictions))
    _, warnings = evaluate("--predictions", tmp_path / "pred2.json")
    assert "1 unanswered question(s)" in warnings and "1 prediction(s) for ids not in the dataset" in warnings


def test_refuses_a_graph_set_of_another_model(tiny_graphs, tiny_queue_runs, small_train_file):
    code, _, stderr = cli("--dataset", small_train_file, "--model", tiny_queue_runs[1] / "teacher" / "model",
                          "--onnx", tiny_graphs, "--doc-stride", "16", "--quiet")
    assert code == 2 and "was not exported from" in stderr and "Traceback" not in stderr


def test_a_passage_cache_needs_a_graph_set(tiny_queue_runs, small_train_file, tmp_path):
    code, _, stderr = cli("--dataset", small_train_file, "--model", tiny_queue_runs[1] / "k1-kd-lrs" / "model",
                          "--passage-cache", tmp_path / "cache", "--quiet")
    assert code == 2 and "needs an exported graph set" in stderr and not (tmp_path / "cache").exists()


def test_a_doc_stride_past_the_window_is_refused(tiny_queue_runs, small_train_file):
    code, stdout, stderr = cli("--dataset", small_train_file, "--model", tiny_queue_runs[1] / "k1-kd-lrs" / "model",
                               "--quiet")  # default stride 128, passages of 64 tokens
    assert code == 2 and "must be at least 0 and smaller than the passage window of 63 tokens" in stderr
    assert stdout == "" and "Traceback" not in stderr


@pytest.mark.parametrize("option", [["--question-len", "32"], ["--passage-len", "80"], ["--position-offset", "zero"],
                                    ["--layer", "2"]])
def test_settings_that_differ_from_the_graph_set_are_refused(tiny_queue_runs, tiny_student_graphs, small_train_file,
                                                             option):
    """The graph set (question 16, passage 64, k=1, offset question_len) fixes them; scoring other settings
    would score another model than the record names."""
    code, stdout, stderr = cli("--dataset", small_train_file, "--model", tiny_queue_runs[1] / "k1-kd-lrs" / "model",
                               "--onnx", tiny_student_graphs, "--doc-stride", "16", "--limit", "4", "--quiet", *option)
    assert code == 2 and "another DeFormer configuration" in stderr and "Traceback" not in stderr, stderr
    assert stdout == ""


def test_the_graph_sets_lengths_are_the_default(tiny_queue_runs, small_train_file, tmp_path):
    from deformer_bench.model import Deformer
    from exporters.onnx_export import export_graph_set

    student = tiny_queue_runs[1] / "k1-kd-lrs" / "model"  # deformer.json: question 16, passage 64
    export_graph_set(Deformer.from_pretrained(student, question_len=12, passage_len=48), tmp_path / "g", progress=False)
    code, stdout, stderr = cli("--dataset", small_train_file, "--model", student, "--onnx", tmp_path / "g",
                               "--doc-stride", "16", "--limit", "4", "--quiet", "--output", tmp_path / "r.json")
    assert code == 0, stderr
    assert json.loads((tmp_path / "r.json").read_text())["deformer"]["question_len"] == 12


def test_outputs_are_checked_before_the_work(tiny_queue_runs, small_train_file, tmp_path):
    (tmp_path / "dir").mkdir()
    for option in ("--output", "--write-predictions"):
        code, _, stderr = cli("--dataset", small_train_file, "--model", tiny_queue_runs[1] / "k1-kd-lrs" / "model",
                              "--doc-stride", "16", "--limit", "2", "--quiet", option, tmp_path / "dir")
        assert code == 2 and f"{option} {tmp_path / 'dir'} is a directory" in stderr and "Traceback" not in stderr
        assert "featurize" not in stderr
    assert [path.name for path in tmp_path.iterdir()] == ["dir"]


def test_model_options_with_predictions_are_refused(tmp_path):
    (tmp_path / "pred.json").write_text("{}")
    code, _, stderr = cli("--dataset", DEV, "--predictions", tmp_path / "pred.json", "--limit", "5")
    assert code == 2 and "--limit evaluate a model and mean nothing with --predictions" in stderr


def test_a_dataset_path_that_is_a_directory_says_so(tmp_path):
    (tmp_path / "pred.json").write_text("{}")
    code, _, stderr = cli("--dataset", tmp_path, "--predictions", tmp_path / "pred.json")
    assert code == 2 and "is a directory" in stderr


@pytest.mark.parametrize("outputs", ["dataset", "model config", "same twice", "cache and record",
                                     "a new record in the model", "a new cache in the model",
                                     "predictions beside the weights through a link"])
def test_outputs_that_would_overwrite_inputs_or_each_other_are_refused(tiny_queue_runs, tiny_student_graphs,
                                                                      small_train_file, tmp_path, outputs):
    import shutil

    dataset = tmp_path / "data.json"
    shutil.copy(small_train_file, dataset)
    model = tmp_path / "model"
    shutil.copytree(tiny_queue_runs[1] / "k1-kd-lrs" / "model", model)
    extra = {"dataset": ["--write-predictions", dataset],
             "model config": ["--output", model / "config.json"],
             "same twice": ["--output", tmp_path / "r.json", "--write-predictions", tmp_path / "r.json"],
             "cache and record": ["--passage-cache", tmp_path / "twin", "--output", tmp_path / "twin"],
             # issue 22, finding 1: new files inside an input are refused too, however the path is spelled
             "a new record in the model": ["--output", model / "eval.json"],
             "a new cache in the model": ["--onnx", tiny_student_graphs, "--passage-cache", model / "cache"],
             "predictions beside the weights through a link": ["--write-predictions", tmp_path / "m" / "p.json"],
             }[outputs]
    (tmp_path / "m").symlink_to(model)
    before = sorted((path, path.is_file() and path.read_bytes()) for path in tmp_path.rglob("*"))
    code, _, stderr = cli("--dataset", dataset, "--model", model, "--doc-stride", "16", "--limit", "2", "--quiet",
                          *extra)
    assert code == 2 and "Traceback" not in stderr and "featurize" not in stderr, stderr
    assert sorted((path, path.is_file() and path.read_bytes()) for path in tmp_path.rglob("*")) == before


def test_a_damaged_graph_whose_hash_was_updated_is_one_clear_error(tiny_queue_runs, tiny_student_graphs,
                                                                   small_train_file, tmp_path):
    import hashlib
    import shutil

    graphs = tmp_path / "g"
    shutil.copytree(tiny_student_graphs, graphs)
    upper = graphs / "upper.onnx"
    upper.write_bytes(upper.read_bytes()[:4000])
    manifest = json.loads((graphs / "manifest.json").read_text())
    manifest["graphs"]["upper"]["sha256"] = hashlib.sha256(upper.read_bytes()).hexdigest()
    (graphs / "manifest.json").write_text(json.dumps(manifest))
    code, _, stderr = cli("--dataset", small_train_file, "--model", tiny_queue_runs[1] / "k1-kd-lrs" / "model",
                          "--onnx", graphs, "--doc-stride", "16", "--limit", "2", "--quiet")
    assert code == 2 and "cannot be loaded by onnxruntime" in stderr and "Traceback" not in stderr, stderr


def test_a_model_with_a_random_head_is_warned_about(tiny_with_tokenizer, small_train_file):
    code, _, stderr = cli("--dataset", small_train_file, "--model", tiny_with_tokenizer, "--layer", "1",
                          "--question-len", "16", "--passage-len", "64", "--doc-stride", "16", "--limit", "2", "--quiet")
    assert code == 0 and "no trained QA head" in stderr, stderr


def test_a_variant_is_evaluated_against_the_same_weights(tiny_queue_runs, small_train_file, tmp_path):
    from deformer_bench.model import Deformer
    from exporters.onnx_export import export_graph_set

    student_dir = tiny_queue_runs[1] / "k1-kd-lrs" / "model"
    graphs = tmp_path / "graphs"
    export_graph_set(Deformer.from_pretrained(student_dir), graphs, progress=False, variants=("int8",))
    scores = {}
    for variant in ("float32", "int8"):
        code, stdout, stderr = cli("--dataset", small_train_file, "--model", student_dir, "--onnx", graphs,
                                   "--variant", variant, "--doc-stride", "16", "--passage-cache",
                                   tmp_path / f"cache-{variant}", "--output", tmp_path / f"{variant}.json", "--quiet")
        assert code == 0, stderr
        scores[variant] = json.loads(stdout)
        record = json.loads((tmp_path / f"{variant}.json").read_text())
        assert record["graph_set"]["variant"] == variant
    assert scores["float32"]["questions"] == scores["int8"]["questions"] > 10

    # the int8 graphs' passage states are not the float32 ones: a cache of one is refused for the other
    code, _, stderr = cli("--dataset", small_train_file, "--model", student_dir, "--onnx", graphs, "--variant", "int8",
                          "--doc-stride", "16", "--passage-cache", tmp_path / "cache-float32", "--quiet")
    assert code == 2 and "another lower_passage graph" in stderr and "float32) than" in stderr and "int8)" in stderr
    # a variant the graph set lacks, and a variant without a graph set
    code, _, stderr = cli("--dataset", small_train_file, "--model", student_dir, "--onnx", graphs,
                          "--variant", "optimized", "--doc-stride", "16", "--quiet")
    assert code == 2 and "has no optimized variant" in stderr and "float32, int8" in stderr
    code, _, stderr = cli("--dataset", small_train_file, "--model", student_dir, "--variant", "int8", "--quiet")
    assert code == 2 and "no --onnx was given" in stderr and "Traceback" not in stderr


def test_a_variants_cache_lacking_questions_names_a_command_that_adds_them(tiny_queue_runs, tiny_student_graphs_int8,
                                                                            small_train_file, tmp_path):
    """The hint was `deformer-cache build --append`, which had no --variant and refused the variant's
    lower_passage (issue 22, finding 12)."""
    import shlex

    student_dir = tiny_queue_runs[1] / "k1-kd-lrs" / "model"
    cache = tmp_path / "cache"
    evaluation = ("--dataset", small_train_file, "--model", student_dir, "--onnx", tiny_student_graphs_int8,
                  "--variant", "int8", "--doc-stride", "16", "--passage-cache", cache, "--quiet")
    code, stdout, stderr = cli(*evaluation, "--limit", "3")  # the first paragraph's windows only
    assert code == 0, stderr
    code, _, stderr = cli(*evaluation)
    assert code == 2 and "lacks" in stderr
    append = shlex.join(["deformer-cache", "build", str(tiny_student_graphs_int8), "--variant", "int8",
                         "--passages", str(small_train_file), "--out", str(cache), "--doc-stride", "16",
                         "--tokenizer", str(student_dir), "--append"])
    assert f"add the dataset's passages to it: {append}" in stderr
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.cache", *shlex.split(append)[1:],
                                "--quiet"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    code, stdout, stderr = cli(*evaluation)
    assert code == 0 and not json.loads(stdout)["passage_cache"]["built"], stderr


def test_an_interrupted_evaluation_removes_the_cache_it_started(tiny_queue_runs, tiny_student_graphs,
                                                                small_train_file, tmp_path, monkeypatch, capsys):
    """As deformer-answer (issue 22, finding 8): "nothing was written" is true, the new cache is gone."""
    import functools

    from deformer_bench import serving
    from deformer_bench.cli.eval import eval_main
    from tests.cli.test_cache_cli import interrupted_at_window, run_in_process

    interrupted_at_window(monkeypatch, 3)  # after two segments of one window were written and listed
    monkeypatch.setattr(serving, "build_passage_cache", functools.partial(serving.build_passage_cache,
                                                                          segment_windows=1))
    code = run_in_process(eval_main, "--dataset", small_train_file, "--model", tiny_queue_runs[1] / "k1-kd-lrs" /
                          "model", "--onnx", tiny_student_graphs, "--doc-stride", "16", "--passage-cache",
                          tmp_path / "cache", "--quiet")
    assert code == 130 and capsys.readouterr().err == "interrupted: nothing was written\n"
    assert not (tmp_path / "cache").exists()
