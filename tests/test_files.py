import pytest

from deformer_bench.files import staged_directory, write_text_atomically


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


def test_without_replace_an_existing_directory_is_not_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OSError):
        with staged_directory(out) as staging:
            (staging / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
