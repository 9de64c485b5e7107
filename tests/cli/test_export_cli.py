import json
import subprocess
import sys

import pytest

from deformer_bench.cli.export import export_main
from deformer_bench.cli.common import run_cli


def cli(*args):
    """The installed entry point's code path, in a fresh process: exit code, stdout, stderr."""
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.export", *map(str, args)],
                               capture_output=True, text=True, timeout=300)
    return completed.returncode, completed.stdout, completed.stderr


def test_export_a_tiny_model(tiny_model_dir, tmp_path):
    relative = tiny_model_dir.relative_to(tiny_model_dir.parent.parent)  # given relative to the working directory
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.export", str(relative),
                                str(tmp_path / "graphs"), "--layer", "1", "--question-len", "8", "--passage-len", "24",
                                "--opset", "17", "--quiet"], capture_output=True, text=True, timeout=300,
                               cwd=tiny_model_dir.parent.parent)
    assert completed.returncode == 0, completed.stderr
    assert "validated at 4 shapes" in completed.stdout
    manifest = json.loads((tmp_path / "graphs" / "manifest.json").read_text())
    assert manifest["opset"] == 17 and manifest["deformer"]["layer"] == 1
    # the tokenizer is looked up there from any directory later (deformer-answer, deformer-cache)
    assert manifest["model"]["source"] == str(tiny_model_dir.resolve())


def test_encoder_without_head_says_so(tiny_encoder_dir, tmp_path, capsys):
    code = run_cli(export_main, [str(tiny_encoder_dir), str(tmp_path / "g"), "-k", "1", "--question-len", "8",
                                 "--passage-len", "24", "--quiet"])
    assert code == 0
    assert "no trained QA head" in capsys.readouterr().err


@pytest.mark.parametrize("case, args, message", [
    ("missing dir", ["{tmp}/nope", "--layer", "1"], "does not exist"),
    ("not a model", ["{tmp}/empty", "--layer", "1"], "no config.json"),
    ("unsupported", ["{gpt2}", "--layer", "1"], "unsupported architecture 'gpt2'; supported: bert, electra, roberta"),
    ("k too big", ["{model}", "--layer", "3", "--question-len", "8", "--passage-len", "24"], "outside 0..2"),
    ("k negative", ["{model}", "--layer", "-1"], "negative"),
    ("no k", ["{model}"], "give the separation layer"),
    ("too long", ["{model}", "--layer", "1", "--question-len", "40", "--passage-len", "80"], "position table has 96"),
])
def test_bad_input_exits_2_with_one_clear_error(tiny_model_dir, gpt2_dir, tmp_path, case, args, message):
    args = [arg.format(tmp=tmp_path, gpt2=gpt2_dir, model=tiny_model_dir) for arg in args]
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    code, stdout, stderr = cli(args[0], out, *args[1:])
    assert code == 2, (case, stderr)
    assert message in stderr
    assert "Traceback" not in stderr and stderr.startswith("error: ") and "fix: " in stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_existing_output_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code, _, stderr = cli(tiny_model_dir, out, "--layer", "1")
    assert code == 2 and "already exists" in stderr and "--overwrite" in stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("where", ["the model's parent", "the model itself", "a graph set inside the model"])
def test_overwrite_never_removes_the_model_it_reads(tiny_model_dir, tiny_graphs, tmp_path, where):
    import shutil

    model = tmp_path / "x" / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "my-notes.txt").write_text("the user's own file")
    out = {"the model's parent": tmp_path / "x", "the model itself": model,
           "a graph set inside the model": model / "graphs"}[where]
    if where == "a graph set inside the model":
        shutil.copytree(tiny_graphs, out)
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    code, _, stderr = cli(model, out, "--layer", "1", "--question-len", "8", "--passage-len", "24", "--overwrite",
                          "--quiet")
    assert code == 2, stderr
    assert stderr.startswith("error: ") and "Traceback" not in stderr and "model" in stderr
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before


def test_a_killed_export_leaves_staging_that_the_next_export_removes(tiny_model_dir, tmp_path):
    import signal
    import time

    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "deformer_bench.cli.export", str(tiny_model_dir), str(out),
                                "--layer", "1", "--question-len", "8", "--passage-len", "24", "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.partial-*/*.onnx")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(tmp_path.glob(".out.partial-*")) and not out.exists()  # what a kill -9 leaves
    code, _, stderr = cli(tiny_model_dir, out, "--layer", "1", "--question-len", "8", "--passage-len", "24", "--quiet")
    assert code == 0, stderr
    assert "removed" in stderr and "left by an interrupted run" in stderr
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("value", ["int4", "int8,fp8", ","])
def test_an_unknown_quantization_is_refused_before_anything_is_written(tiny_model_dir, tmp_path, value):
    code, _, stderr = cli(tiny_model_dir, tmp_path / "out", "--layer", "1", "--quantize", value)
    assert code == 2 and "give int8, int8-arm64 or both" in stderr and not (tmp_path / "out").exists()


def test_opset_is_checked_before_the_model_loads(tiny_model_dir, tmp_path):
    code, _, stderr = cli(tiny_model_dir, tmp_path / "out", "--layer", "1", "--opset", "0")
    assert code == 2 and "opset 0 is outside" in stderr and not (tmp_path / "out").exists()


def test_export_with_variants_says_what_each_differs_from_float32(tiny_model_dir, tmp_path):
    code, out, err = cli(tiny_model_dir, tmp_path / "out", "--layer", "1", "--question-len", "8", "--passage-len",
                         "24", "--optimize", "--quantize", "int8-arm64,int8", "--quiet")
    assert code == 0, err
    assert "variant optimized (from float32): max abs diff from float32" in out
    assert "variant int8-arm64 (from optimized)" in out and "(tolerance 5)" in out
    assert "variant int8 (from optimized)" in out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert list(manifest["variants"]) == ["optimized", "int8", "int8-arm64"]
    assert "per tensor" in manifest["variants"]["int8"]["recipe"]
    assert "per channel" in manifest["variants"]["int8-arm64"]["recipe"]


@pytest.mark.parametrize("where", ["a new folder in the model", "'.' from inside the model", "a new folder relative "
                                   "from inside it", "through a link to the model", "'..' back into the model"])
def test_a_new_out_may_not_lie_inside_the_model(tiny_model_dir, tmp_path, where):
    """Issue 22, finding 1: no output lands inside an input, a new one included (before, only an OUT/ that
    existed inside the model was refused)."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (tmp_path / "link").symlink_to(model)
    (tmp_path / "other").mkdir()
    out = {"a new folder in the model": model / "graphs", "'.' from inside the model": ".",
           "a new folder relative from inside it": "graphs", "through a link to the model": tmp_path / "link" / "g",
           "'..' back into the model": tmp_path / "other" / ".." / "model" / "g"}[where]
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.export", str(model), str(out), "--layer",
                                "1", "--question-len", "8", "--passage-len", "24", "--quiet"],
                               capture_output=True, text=True, timeout=300, cwd=model)
    assert completed.returncode == 2, completed.stderr
    assert "the model directory" in completed.stderr and "Traceback" not in completed.stderr
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before
