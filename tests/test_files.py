import errno
import os
from pathlib import Path

import pytest

from deformer_bench.errors import OutputExistsError, OutputLocationError
from deformer_bench.files import (check_output_dir, check_output_file, clean_stale_staging, staged_directory,
                                  write_text_atomically)

DEAD = 999999999  # a process id that does not exist


def test_text_is_written_whole(tmp_path):
    path = tmp_path / "a.json"
    write_text_atomically(path, "{}\n")
    write_text_atomically(path, "[1]\n")
    assert path.read_text() == "[1]\n" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_directory_appears_only_when_the_block_succeeds(tmp_path):
    out = tmp_path / "deep" / "out"
    with pytest.raises(RuntimeError):
        with staged_directory(out) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("failed midway")
    assert list((tmp_path / "deep").iterdir()) == []
    with staged_directory(out) as staging:
        (staging / "whole.txt").write_text("whole")
    assert [p.name for p in out.iterdir()] == ["whole.txt"]
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["out"]


def test_replace_keeps_the_old_directory_until_the_new_one_is_complete(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_directory(out, replace=True) as staging:
            (staging / "new.txt").write_text("new")
            raise RuntimeError("failed midway")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    with staged_directory(out, replace=True) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("empty", [False, True])
def test_without_replace_an_existing_directory_is_not_overwritten(tmp_path, empty):
    """Even an empty one, which a plain rename would silently replace."""
    out = tmp_path / "out"
    out.mkdir()
    if not empty:
        (out / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError):
        with staged_directory(out) as staging:
            (staging / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ([] if empty else ["old.txt"])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_replace_onto_a_file_leaves_nothing_aside(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    with staged_directory(out, replace=True) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and out.is_dir()


def test_a_failed_text_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    path.write_text("old")

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(type(path), "replace", disk_full)
    with pytest.raises(OSError):
        write_text_atomically(path, "new")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"] and path.read_text() == "old"


def test_a_directory_is_not_written_over_as_a_file(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputLocationError, match="is a directory"):
        write_text_atomically(tmp_path / "out", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_stale_staging_of_dead_processes_is_cleaned_live_kept(tmp_path):
    target = tmp_path / "out.json"
    dead_file = tmp_path / f".out.json.partial-{DEAD}"
    dead_file.write_text("half")
    users = tmp_path / "out.json.partial"  # not our staging name (any more): maybe the user's, left alone
    users.write_text("mine")
    live = tmp_path / f".out.json.partial-{os.getppid()}"
    live.write_text("being written")
    other = tmp_path / f".other.json.partial-{DEAD}"  # another target's: not ours to judge here
    other.write_text("half")
    clean_stale_staging(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, users.name])


def test_a_moved_aside_output_is_removed_once_the_new_one_is_in_place(tmp_path):
    (tmp_path / "out").mkdir()
    aside = tmp_path / f".out.replaced-{DEAD}"
    aside.mkdir()
    clean_stale_staging(tmp_path / "out")  # the swap completed; only the removal of the old one was cut short
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


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


def test_a_full_disk_inside_a_staged_directory_is_a_disk_full_error(tmp_path):
    from deformer_bench.errors import DiskFullError

    with pytest.raises(DiskFullError, match="filled up while writing") as raised:
        with staged_directory(tmp_path / "out") as staging:
            (staging / "half.onnx").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert raised.value.exit_code == 3 and list(tmp_path.iterdir()) == []


def test_scratch_directories_of_dead_processes_are_removed(tmp_path, monkeypatch):
    import tempfile

    from deformer_bench.files import scratch_directory

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"deformer-passage-cache-{DEAD}-abc"
    stale.mkdir()
    (stale / "passage_hidden.npy").write_bytes(b"800 MB in real life")
    live = tmp_path / f"deformer-passage-cache-{os.getppid()}-def"
    live.mkdir()
    other = tmp_path / f"deformer-bench-graphs-{DEAD}-ghi"  # another prefix: its own command cleans it
    other.mkdir()
    with scratch_directory("deformer-passage-cache-") as scratch:
        assert os.path.isdir(scratch) and f"-{os.getpid()}-" in os.path.basename(scratch)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_outputs_may_not_overwrite_inputs_or_each_other(tmp_path):
    from deformer_bench.files import check_distinct_paths

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
    from deformer_bench.files import check_distinct_paths

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
    from deformer_bench.files import check_distinct_paths

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
    from deformer_bench.files import check_distinct_paths

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


def test_several_files_are_written_all_or_none(tmp_path, monkeypatch):
    from pathlib import Path

    from deformer_bench.files import write_texts_atomically

    real_write = Path.write_text

    def second_fails(self, text, *args, **kwargs):
        if "second" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", second_fails)
    with pytest.raises(OSError) as raised:
        write_texts_atomically({tmp_path / "first.json": "1", tmp_path / "second.json": "2"})
    assert raised.value.filename == str(tmp_path / "second.json")  # the file asked for, not the staging name
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    write_texts_atomically({tmp_path / "new" / "first.json": "1"})  # a folder that does not exist yet
    assert (tmp_path / "new" / "first.json").read_text() == "1"


def test_a_staged_directory_named_dot_or_by_a_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    with staged_directory("../out") as staging:
        (staging / "x").write_text("x")
    assert (tmp_path / "out" / "x").exists()
    with pytest.raises(OutputExistsError):
        with staged_directory("."):
            pass


def test_a_broken_symbolic_link_is_named_as_such(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(OutputLocationError, match="broken symbolic link"):
        check_output_dir(tmp_path / "link")


def test_our_own_pid_on_a_leftover_is_a_dead_process(tmp_path):
    """In a container every run may be PID 1: a leftover named with our PID that we are not writing is stale."""
    leftover = tmp_path / f".out.replaced-{os.getpid()}"
    leftover.mkdir()
    (leftover / "old.txt").write_text("old")
    clean_stale_staging(tmp_path / "out")
    assert (tmp_path / "out" / "old.txt").read_text() == "old"
    with staged_directory(tmp_path / "out", replace=True) as staging:  # and replacing works again
        (staging / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (tmp_path / "out" / "new.txt").exists()


def test_a_failed_swap_puts_the_old_output_back(tmp_path, monkeypatch):
    from pathlib import Path

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    real_rename = Path.rename

    def staging_rename_fails(self, target):
        if ".partial-" in self.name:
            raise KeyboardInterrupt  # Ctrl-C between the two renames
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", staging_rename_fails)
    with pytest.raises(KeyboardInterrupt):
        with staged_directory(out, replace=True) as staging:
            (staging / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "old.txt").exists()


def test_a_huge_number_in_a_staging_name_is_left_alone(tmp_path):
    odd = tmp_path / ".out.partial-99999999999999999999"
    odd.mkdir()
    clean_stale_staging(tmp_path / "out")
    assert odd.exists()
