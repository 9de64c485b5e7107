"""One build at a time per cache directory (deformer_bench/passage_cache/lock.py): a second build refused and
touching nothing, the lock gone on every exit, a lock file replaced under a build locked again."""

import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.contracts.manifest import load_graph_set
from tests.passage_cache.conftest import build, windows


def test_a_second_build_is_refused_by_the_lock_and_touches_nothing(tiny_graphs, tmp_path):
    import fcntl

    from deformer_bench.passage_cache.lock import LOCK_FILE

    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    (tmp_path / "cache").mkdir()
    with open(tmp_path / "cache" / LOCK_FILE, "w") as held:  # a first build at work
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(PassageCacheError, match="another build is writing"):
            build(graph_set, ids, mask, tmp_path / "cache")
        assert (tmp_path / "cache" / LOCK_FILE).exists()  # its lock file is not removed under it
    (tmp_path / "fresh").mkdir()
    with pytest.raises(PassageCacheError, match="another build is writing"):
        with open(tmp_path / "fresh" / LOCK_FILE, "w") as other:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            build(graph_set, ids, mask, tmp_path / "fresh")
    assert (tmp_path / "fresh").is_dir()  # refused by the lock: the other build's directory stays
    cache = build(graph_set, ids, mask, tmp_path / "cache")  # once free, the build runs
    assert cache.windows == 4


def test_the_lock_goes_on_every_exit_and_a_refusal_before_it_makes_nothing(tiny_graphs, tmp_path, monkeypatch):
    """Issue 22, finding 7: a refused build left .build.lock in --out (a graph set's then refused --overwrite)."""
    import deformer_bench.passage_cache.engines as engines_module
    from deformer_bench.passage_cache.lock import LOCK_FILE

    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build(graph_set, ids, mask, tmp_path / "done")
    assert not (tmp_path / "done" / LOCK_FILE).exists()  # a build that finished
    with pytest.raises(PassageCacheError, match="stores float32, not int8"):  # refused under the lock
        build(graph_set, ids, mask, tmp_path / "done", dtype="int8")
    assert not (tmp_path / "done" / LOCK_FILE).exists()

    def fails(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engines_module, "write_segment", fails)
    (tmp_path / "killed").mkdir()
    with pytest.raises(KeyboardInterrupt):  # interrupted mid-build
        build(graph_set, ids, mask, tmp_path / "killed")
    assert sorted(path.name for path in (tmp_path / "killed").iterdir()) == ["cache.json"]
    monkeypatch.undo()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(PassageCacheError, match="is not a passage cache"):  # refused before any lock
        build(graph_set, ids, mask, tmp_path / "mine")
    assert [path.name for path in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_a_lock_file_replaced_under_a_build_is_locked_again(tmp_path, monkeypatch):
    """The lock file is removed when a build ends: a build that opened it just before, and so locked a file no
    longer at the path, locks the one now there instead, so that two builds never run at once."""
    import fcntl

    import deformer_bench.passage_cache.lock as lock_module
    from deformer_bench.passage_cache.lock import LOCK_FILE, build_lock

    real_flock, replaced = fcntl.flock, []

    def flock(handle, operation):
        if not replaced:  # between our open and our lock, the holder ended and a third build made a new file
            (tmp_path / LOCK_FILE).unlink()
            (tmp_path / LOCK_FILE).write_text("")
            replaced.append(True)
        return real_flock(handle, operation)

    monkeypatch.setattr(lock_module.fcntl, "flock", flock)
    with build_lock(tmp_path):
        with open(tmp_path / LOCK_FILE) as other, pytest.raises(OSError):
            real_flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the file at the path is the one held
    assert not (tmp_path / LOCK_FILE).exists()
