"""The library API: README's "Python API" example runs as written (on a tiny model it is pointed at through
DEFORMER_MODEL), and each command's function takes a typed request."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The first ```python block of README's "Python API" section, as written."""
    section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def tiny_deformer_dir(tmp_path, tiny_model_dir) -> Path:
    """A DeFormer model directory (deformer.json: k=1, lengths 8 + 24) of the tiny random BERT."""
    from deformer_bench.model import Deformer

    directory = tmp_path / "tiny-deformer"
    Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24).save_pretrained(directory)
    return directory


def test_the_readme_example_runs_as_written(tiny_deformer_dir, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # its relative paths (build/api-example/...) land here
    monkeypatch.setenv("DEFORMER_MODEL", str(tiny_deformer_dir))
    namespace = {}
    exec(compile(readme_example(), "README.md (Python API)", "exec"), namespace)
    printed = capsys.readouterr().out
    run, graphs = namespace["run"], namespace["graphs"]
    assert graphs.directory == Path("build/api-example/graphs")
    assert (work / graphs.directory / "manifest.json").is_file()
    assert graphs.layer == 1
    assert run.exit_code == 0 and (work / run.report).is_file()
    assert run.speedup() > 0 and f"{run.speedup():.2f}x the unsplit model" in printed


def test_a_request_is_checked_before_any_work(tmp_path):
    from deformer_bench.api import BenchmarkRequest, benchmark
    from deformer_bench.contracts.errors import ConfigError

    with pytest.raises(ConfigError, match="names a layer more than once"):
        benchmark(BenchmarkRequest(arch="minilm-l6", layers=(1, 1), output=tmp_path / "results"))
    with pytest.raises(ConfigError, match="is not a list of distinct variants"):
        benchmark(BenchmarkRequest(arch="minilm-l6", variants=("int9",), output=tmp_path / "results"))
    assert not (tmp_path / "results").exists()


def test_every_command_function_is_exported_with_its_request_and_result():
    import dataclasses

    import deformer_bench.api as api

    for function, request, result in (("export", "ExportRequest", "ExportResult"),
                                      ("benchmark", "BenchmarkRequest", "BenchmarkResult"),
                                      ("build_cache", "CacheBuildRequest", "CacheBuildResult"),
                                      ("answer", "AnswerRequest", "AnswerResult"),
                                      ("evaluate", "EvaluateRequest", "EvaluateResult")):
        assert callable(getattr(api, function))
        assert dataclasses.is_dataclass(getattr(api, request)) and dataclasses.is_dataclass(getattr(api, result))
