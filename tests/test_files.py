import errno
import os
import re
import stat

import pytest

from deformer_bench.contracts.errors import OutputExistsError, OutputLocationError
from deformer_bench.files import (RESULTS_NAME_MAX, check_output_file, clean_stale_staging, new_results_folder,
                                  staged_directory, write_text_atomically)

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
    assert list(tmp_path.iterdir()) == []  # nor the folder it made for it
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


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failed_block_removes_the_folders_it_made_and_only_those(tmp_path, failure):
    """A run that fails leaves no empty results root behind (`--output runs/new`): the folders staged_directory
    made are removed while empty; one that was there before, or that another writer put a file in, is kept."""
    (tmp_path / "there").mkdir()
    with pytest.raises(failure):
        with staged_directory(tmp_path / "there" / "a" / "b" / "out"):
            raise failure()
    assert list(tmp_path.iterdir()) == [tmp_path / "there"] and list((tmp_path / "there").iterdir()) == []
    with pytest.raises(failure):
        with staged_directory(tmp_path / "there" / "a" / "b" / "out"):
            (tmp_path / "there" / "a" / "other.txt").write_text("another writer's")
            raise failure()
    assert sorted(path.name for path in (tmp_path / "there" / "a").iterdir()) == ["other.txt"]


def test_a_full_disk_inside_a_staged_directory_is_a_disk_full_error(tmp_path):
    from deformer_bench.contracts.errors import DiskFullError

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


def test_a_results_folder_is_named_date_profile_model_within_60_characters(tmp_path):
    """Named for a person: `<date>-<profile>-<model>`, lower case, one dash between words, however long the
    model's name (it was 164 characters with four variants of a long model name in it)."""
    folder = new_results_folder(tmp_path, "server-cpu", "BERT base (random weights)+" + "a-very-long-model-name" * 5)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-server-cpu-bert-base-random-weights-a-very-[a-z-]*[a-z]",
                        folder.name), folder.name
    assert len(folder.name) <= RESULTS_NAME_MAX == 60 and folder.parent == tmp_path and not folder.exists()
    short = new_results_folder(tmp_path, "server-cpu", "minilm-l6-h384")
    assert short.name == f"{short.name[:10]}-server-cpu-minilm-l6-h384"


def test_a_results_folder_never_reuses_a_name_and_counts_within_60_characters(tmp_path):
    names = []
    for _ in range(120):  # -2 ... -120: a three-digit counter still fits, by cutting the name, not the counter
        folder = new_results_folder(tmp_path, "server-cpu", "a-very-long-model-name" * 5)
        folder.mkdir()
        names.append(folder.name)
    assert len(set(names)) == 120 and max(len(name) for name in names) <= RESULTS_NAME_MAX
    assert names[1] == names[0] + "-2" and names[2] == names[0] + "-3" and names[-1].endswith("-120")
    link = new_results_folder(tmp_path, "p", "m")
    link.symlink_to(tmp_path / "nowhere")  # a link, even a broken one, is a name taken
    assert new_results_folder(tmp_path, "p", "m").name == link.name + "-2"


@pytest.mark.parametrize("kind", ["symlink", "dangling", "fifo"])
def test_an_output_file_that_is_a_link_or_a_device_is_refused_and_left_alone(tmp_path, kind):
    """Written beside and renamed over, an output would replace the link or the device node itself: as root,
    `deformer-answer --output /dev/stdout` replaced /dev/stdout (a link) with a regular file for the whole system."""
    from deformer_bench.files import write_text_atomically

    target, output = tmp_path / "real.json", tmp_path / "out.json"
    if kind == "symlink":
        target.write_text("mine")
        output.symlink_to(target)
    elif kind == "dangling":
        output.symlink_to(tmp_path / "gone" / "x.json")
    else:
        os.mkfifo(output)
    with pytest.raises(OutputLocationError, match="symbolic link|FIFO"):
        check_output_file(output, "--output")
    with pytest.raises(OutputLocationError, match="symbolic link|FIFO"):
        write_text_atomically(output, "{}")
    assert output.is_symlink() if kind != "fifo" else stat.S_ISFIFO(os.lstat(output).st_mode)
    assert kind != "symlink" or target.read_text() == "mine"
