import json

from deformer_bench.analysis.study_cli import run_study_cli
from deformer_bench.errors import ConfigError
from deformer_bench.files import staged_directory


def write_json(result, out_dir):
    with staged_directory(out_dir) as staging:
        (staging / "study.json").write_text(json.dumps(result))


def add_arguments(parser):
    parser.add_argument("--layers", default="1")


def test_study_runs_with_shared_arguments_and_records_the_command(tmp_path, capsys):
    seen = {}

    def run(args):
        seen.update(vars(args))
        return {"rows": [{"layer": int(args.layers)}]}

    out = tmp_path / "out"
    argv = ["--dataset", "dev.json", "--count", "7", "--layers", "3", "--out", str(out)]
    assert run_study_cli("some.study", "a study", add_arguments, run, write_json, "study.json", argv) == 0
    assert seen["count"] == 7 and seen["layers"] == "3" and str(seen["dataset"]) == "dev.json"
    result = json.loads((out / "study.json").read_text())
    assert result["rows"] == [{"layer": 3}]
    assert result["environment"]["command"] == "python -m some.study " + " ".join(argv)
    assert f"wrote {out}/study.json" in capsys.readouterr().out


def test_existing_output_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()

    def run(args):
        raise AssertionError("the study must not run")

    argv = ["--dataset", "dev.json", "--out", str(out)]
    assert run_study_cli("some.study", "a study", add_arguments, run, write_json, "study.json", argv) == 2
    assert "already exists" in capsys.readouterr().err


def test_failed_study_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"

    def run(args):
        raise ConfigError("bad layers", "give --layers 1")

    argv = ["--dataset", "dev.json", "--out", str(out)]
    assert run_study_cli("some.study", "a study", add_arguments, run, write_json, "study.json", argv) == 2
    assert "bad layers" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_out_may_not_lie_inside_a_path_the_study_reads(tmp_path, capsys):
    """Issue 22, finding 1: every path a study is given (dataset, model, teacher) is an input."""
    from pathlib import Path

    def with_model(parser):
        parser.add_argument("--model", type=Path)

    def run(args):
        raise AssertionError("the study must not run")

    (tmp_path / "model").mkdir()
    argv = ["--dataset", "dev.json", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "model" / "study")]
    assert run_study_cli("some.study", "a study", with_model, run, write_json, "study.json", argv) == 2
    assert "--out" in capsys.readouterr().err and list((tmp_path / "model").iterdir()) == []
