"""The output checks a command runs before any work (deformer_bench/output_locations.py): a location that cannot
take the output, and an output that is, lies inside or holds one of the command's inputs, however it is spelled."""

import errno
import os
from pathlib import Path

import pytest

from deformer_bench.contracts.errors import OutputLocationError
from deformer_bench.output_locations import check_distinct_paths, check_output_dir, check_output_file


@pytest.mark.parametrize("case", ["a file where a folder goes", "a file on the way", "unwritable"])
def test_output_locations_are_checked_without_creating_anything(tmp_path, monkeypatch, case):
    import tempfile

    (tmp_path / "file").write_text("x")
    target = {"a file where a folder goes": tmp_path / "file", "a file on the way": tmp_path / "file" / "sub",
              "unwritable": tmp_path / "new" / "deeper"}[case]
    if case == "unwritable":
        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OutputLocationError):
        check_output_dir(target)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_output_file_checks(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputLocationError, match="is a directory"):
        check_output_file(tmp_path / "dir")
    check_output_file(tmp_path / "new" / "result.json")  # a folder that does not exist yet is fine
    assert [p.name for p in tmp_path.iterdir()] == ["dir"]


def test_outputs_may_not_overwrite_inputs_or_each_other(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (tmp_path / "data.json").write_text("{}")
    inputs = {"the dataset": tmp_path / "data.json", "the model directory": model, "the graph set": None}
    with pytest.raises(OutputLocationError, match="would overwrite the dataset"):
        check_distinct_paths({"--write-predictions": tmp_path / "data.json"}, inputs)
    with pytest.raises(OutputLocationError, match="lies inside the model directory"):
        check_distinct_paths({"--output": model / "config.json"}, inputs)
    with pytest.raises(OutputLocationError, match="overlap"):
        check_distinct_paths({"--output": tmp_path / "a.json", "--write-predictions": tmp_path / "a.json"}, inputs)
    with pytest.raises(OutputLocationError, match="overlap"):
        check_distinct_paths({"--passage-cache": tmp_path / "c", "--output": tmp_path / "c" / "r.json"}, inputs)
    check_distinct_paths({"--output": tmp_path / "r.json", "--write-predictions": tmp_path / "p.json",
                          "--passage-cache": None}, inputs)


@pytest.mark.parametrize("name", ["model.safetensors", "vocab.txt", "tokenizer.json", "config.json", "new.json",
                                  "sub/new.json"])
def test_no_output_lands_on_or_inside_an_input_folder_new_files_included(tmp_path, monkeypatch, name):
    """Issue 22, finding 1: an answers file written over MODEL/model.safetensors. Every spelling of a path inside
    the model folder is refused, an existing file or a new one: plain, relative from inside the folder, with
    '.' and '..', and through a symbolic link to the folder or to a file in it."""
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    for existing in ("model.safetensors", "vocab.txt", "tokenizer.json", "config.json"):
        (model / existing).write_text("weights")
    (tmp_path / "link").symlink_to(model)
    (tmp_path / "elsewhere").mkdir()
    inputs = {"the tokenizer directory": model}
    spellings = [model / name, tmp_path / "link" / name, tmp_path / "elsewhere" / ".." / "model" / name,
                 model / "sub" / ".." / name, model / "." / name]
    for output in spellings:
        with pytest.raises(OutputLocationError, match="lies inside the tokenizer directory"):
            check_distinct_paths({"--output": output}, inputs)
    monkeypatch.chdir(model)  # `--output config.json` run from inside MODEL, MODEL named by its absolute path
    with pytest.raises(OutputLocationError, match="lies inside the tokenizer directory"):
        check_distinct_paths({"--output": Path(name)}, inputs)
    with pytest.raises(OutputLocationError, match="lies inside the tokenizer directory"):
        check_distinct_paths({"--output": Path("./" + name)}, {"the tokenizer directory": Path(".")})
    monkeypatch.chdir(tmp_path / "elsewhere")
    check_distinct_paths({"--output": Path(name)}, inputs)  # outside it: fine


def test_an_output_that_is_a_link_into_an_input_or_lies_in_a_linked_input_is_refused(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_text("weights")
    (tmp_path / "answers.json").symlink_to(model / "model.safetensors")  # a write through it reaches the weights
    with pytest.raises(OutputLocationError, match="would overwrite the model directory's weights"):
        check_distinct_paths({"--output": tmp_path / "answers.json"},
                             {"the model directory's weights": model / "model.safetensors"})
    (model / "out").symlink_to(tmp_path / "outside")  # a link inside the model to a folder outside it
    with pytest.raises(OutputLocationError, match="lies inside the model directory"):
        check_distinct_paths({"--output": model / "out"}, {"the model directory": model})
    (tmp_path / "hard").mkdir()
    os.link(model / "model.safetensors", tmp_path / "hard" / "weights")  # the same file under another name
    with pytest.raises(OutputLocationError, match="would overwrite"):
        check_distinct_paths({"--output": tmp_path / "hard" / "weights"}, {"the weights": model / "model.safetensors"})


def test_no_output_folder_may_hold_an_input(tmp_path):
    """OUT containing MODEL (or the passages file) is refused as OUT inside MODEL is, however OUT is spelled;
    a results root that only gets a new folder of the run's (deformer-bench --output) may hold inputs."""
    work = tmp_path / "work"
    (work / "model").mkdir(parents=True)
    (work / "passages.jsonl").write_text("{}")
    inputs = {"the model directory": work / "model", "the passages file": work / "passages.jsonl"}
    for output in (work, tmp_path, work / "model" / "..", tmp_path / "work" / "."):
        with pytest.raises(OutputLocationError, match="holds the model directory"):
            check_distinct_paths({"--out": output}, inputs)
    (tmp_path / "alias").symlink_to(work)
    with pytest.raises(OutputLocationError, match="holds the model directory"):
        check_distinct_paths({"--out": tmp_path / "alias"}, inputs)
    check_distinct_paths({"--output": work}, inputs, roots=("--output",))
    with pytest.raises(OutputLocationError, match="lies inside the model directory"):
        check_distinct_paths({"--output": work / "model" / "results"}, inputs, roots=("--output",))


def test_a_broken_symbolic_link_is_named_as_such(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(OutputLocationError, match="broken symbolic link"):
        check_output_dir(tmp_path / "link")
