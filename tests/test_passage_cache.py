import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import onnxruntime
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.passage_cache import build_passage_cache, distinct_windows, load_passage_cache
from deformer_bench.passage_cache.codecs import decode, encode
from deformer_bench.serving import evaluation_session
from deformer_bench.contracts.manifest import load_graph_set


def windows():
    """[10, 24] passage ids and mask for the tiny graph set (vocab 120): 4 distinct windows, repeated as SQuAD
    repeats a paragraph's windows for each of its questions."""
    distinct_ids = np.random.default_rng(0).integers(1, 120, size=(4, 24))
    distinct_mask = np.ones_like(distinct_ids)
    distinct_mask[0, 20:] = 0  # one padded window
    distinct_ids[0, 20:] = 0
    order = np.array([0, 0, 1, 2, 1, 0, 3, 3, 2, 1])
    return distinct_ids[order], distinct_mask[order]


def direct_states(graph_set, ids, mask):
    return onnxruntime.InferenceSession(str(graph_set.path("lower_passage"))).run(
        None, {"passage_input_ids": ids, "passage_attention_mask": mask})[0]


def build(graph_set, ids, mask, out, **options):
    return build_passage_cache(graph_set, ids, mask, out, evaluation_session, progress=False, **options)


def test_distinct_windows_map_every_window_back():
    ids, mask = windows()
    first, row_of = distinct_windows(ids, mask)
    assert len(first) == 4 and len(row_of) == 10
    assert (ids[first][row_of] == ids).all() and (mask[first][row_of] == mask).all()
    # the same ids under another mask are another window
    mask2 = mask.copy()
    mask2[2, -1] = 0  # a window 1
    assert len(distinct_windows(ids, mask2)[0]) == 5


def test_a_segment_keeps_its_windows_exactly_in_narrow_types_with_digest_keys(tiny_graphs, tmp_path):
    from deformer_bench.passage_cache import window_keys

    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    cache = build(graph_set, ids, mask, tmp_path / "cache")
    arrays = {stem: cache.array(0, stem) for stem in ("passage_input_ids", "passage_attention_mask", "window_key")}
    assert arrays["passage_input_ids"].dtype == np.uint16 and arrays["passage_attention_mask"].dtype == np.uint8
    first, _ = distinct_windows(ids, mask)
    assert (arrays["passage_input_ids"] == ids[first]).all() and (arrays["passage_attention_mask"] == mask[first]).all()
    assert arrays["window_key"].shape == (4, 16)
    assert [bytes(key) for key in arrays["window_key"]] == window_keys(arrays["passage_input_ids"],
                                                                       arrays["passage_attention_mask"])
    # a damaged key file leads the lookup astray only into its own segment, whose read then refuses it
    keys = np.load(tmp_path / "cache" / "segment-00000" / "window_key.npy")
    keys[[0, 1]] = keys[[1, 0]]  # two windows swap rows: the states they would read are each other's
    np.save(tmp_path / "cache" / "segment-00000" / "window_key.npy", keys)
    reopened = load_passage_cache(tmp_path / "cache", graph_set)
    with pytest.raises(PassageCacheError, match="window_key.npy is damaged"):
        reopened.passage_hidden(reopened.rows(ids, mask))


def test_cached_states_are_lower_passage_run_on_every_window(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    cache = build(graph_set, ids, mask, tmp_path / "cache", batch_size=3, segment_windows=3)
    assert cache.windows == 4 and cache.info["identity"]["layer"] == 1 and cache.info["complete"]
    assert [segment.windows for segment in cache.segments] == [3, 1]  # two segments, rows across both
    np.testing.assert_allclose(cache.passage_hidden(cache.rows(ids, mask)), direct_states(graph_set, ids, mask),
                               atol=1e-5)
    reopened = load_passage_cache(tmp_path / "cache", graph_set)
    assert np.array_equal(reopened.passage_hidden(reopened.rows(ids[:3], mask[:3])), cache.passage_hidden([0, 0, 1]))
    # the same tokens as int32 (another tokenizer's output dtype) find the same rows
    assert (reopened.rows(ids.astype(np.int32), mask.astype(np.int32)) == reopened.rows(ids, mask)).all()
    with pytest.raises(PassageCacheError, match="exists and is complete"):
        build(graph_set, ids, mask, tmp_path / "cache")


@pytest.mark.parametrize("dtype, tolerance, ratio", [("float16", 2e-3, 0.5), ("int8", 2e-2, 0.25 + 1 / 32)])
def test_float16_and_int8_states_decode_close_to_float32_in_less_room(tiny_graphs, tmp_path, dtype, tolerance,
                                                                      ratio):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    full = build(graph_set, ids, mask, tmp_path / "float32")
    small = build(graph_set, ids, mask, tmp_path / dtype, dtype=dtype)
    exact = full.passage_hidden(full.rows(ids, mask))
    read = small.passage_hidden(small.rows(ids, mask))
    assert read.dtype == np.float32
    scale = np.abs(exact).max(axis=-1, keepdims=True)
    assert (np.abs(read - exact) <= tolerance * scale).all()
    stored = [small.array(index, "passage_hidden").nbytes + (small.array(index, "passage_scale").nbytes
                                                             if dtype == "int8" else 0)
              for index in range(len(small.segments))]
    assert sum(stored) == pytest.approx(ratio * full.array(0, "passage_hidden").nbytes)


def test_int8_keeps_each_tokens_largest_state_and_zero_tokens():
    hidden = np.array([[[0.0, 0.0, 0.0], [1.0, -2.54, 0.5]]], dtype=np.float32)
    encoded = encode(hidden, "int8")
    assert encoded["passage_hidden"].dtype == np.int8 and encoded["passage_scale"].shape == (1, 2)
    decoded = decode(encoded["passage_hidden"], encoded["passage_scale"])
    assert decoded[0, 0].tolist() == [0.0, 0.0, 0.0] and decoded[0, 1, 1] == pytest.approx(-2.54)
    assert np.abs(decoded - hidden).max() <= 2.54 / 127 / 2 + 1e-7


def test_append_adds_only_new_windows_as_a_new_segment(tiny_graphs, tmp_path, monkeypatch):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build(graph_set, ids[:5], mask[:5], tmp_path / "cache")  # windows 0, 1, 2
    before = (tmp_path / "cache" / "segment-00000" / "passage_hidden.npy").read_bytes()
    cache = build(graph_set, ids, mask, tmp_path / "cache", append=True)  # window 3 is new
    assert [segment.windows for segment in cache.segments] == [3, 1]
    assert (tmp_path / "cache" / "segment-00000" / "passage_hidden.npy").read_bytes() == before  # not rewritten
    assert [build_record["new_windows"] for build_record in cache.info["builds"]] == [3, 1]
    np.testing.assert_allclose(cache.passage_hidden(cache.rows(ids, mask)), direct_states(graph_set, ids, mask),
                               atol=1e-5)
    with pytest.raises(PassageCacheError, match="stores float32, not int8"):
        build(graph_set, ids, mask, tmp_path / "cache", dtype="int8", append=True)

    # an append that fails midway (here: its second shard finds no room) leaves the cache complete and readable,
    # its first shard's segment listed
    import deformer_bench.passage_cache.build as build_module
    from deformer_bench.passage_cache import build_passage_cache_from_shards

    more = np.random.default_rng(1).integers(1, 120, size=(2, 24))
    calls = []

    def room_once(out_dir, needed):
        calls.append(needed)
        if len(calls) > 1:
            raise PassageCacheError("no room", "free some")

    monkeypatch.setattr(build_module, "check_free_space", room_once)
    with pytest.raises(PassageCacheError, match="no room"):
        build_passage_cache_from_shards(graph_set, [(more[:1], np.ones_like(more[:1])),
                                                    (more[1:], np.ones_like(more[1:]))],
                                        tmp_path / "cache", evaluation_session, progress=False, append=True)
    monkeypatch.undo()
    reopened = load_passage_cache(tmp_path / "cache", graph_set)
    assert reopened.info["complete"] and reopened.windows == 5  # 4 + the first shard's window
    assert len(reopened.info["builds"]) == 2  # the failed append recorded no build
    with pytest.raises(PassageCacheError, match="doc stride 128, not 64"):
        build(graph_set, ids, mask, tmp_path / "strided", doc_stride=128)
        build(graph_set, ids, mask, tmp_path / "strided", doc_stride=64, append=True)


def test_a_killed_build_goes_on_from_its_last_complete_segment(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    calls = []

    class DiesOnTheThirdBatch:
        def __init__(self, path):
            self.session = evaluation_session(path)

        def run(self, names, feed):
            calls.append(len(feed["passage_input_ids"]))
            if len(calls) == 3:
                raise KeyboardInterrupt  # as Ctrl-C or SIGTERM would
            return self.session.run(names, feed)

    with pytest.raises(KeyboardInterrupt):
        build_passage_cache(graph_set, ids, mask, tmp_path / "cache", DiesOnTheThirdBatch, batch_size=1,
                            segment_windows=2, progress=False)
    record = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert not record["complete"] and [entry["windows"] for entry in record["segments"]] == [2]
    (tmp_path / "cache" / ".segment-00001.partial-1-x").mkdir()  # what a kill -9 mid-segment leaves
    (tmp_path / "cache" / "segment-00009").mkdir()  # renamed but never listed
    with pytest.raises(PassageCacheError, match="lacks 2 of the 4 .*did not finish"):
        load_passage_cache(tmp_path / "cache", graph_set).rows(ids[distinct_windows(ids, mask)[0]],
                                                                mask[distinct_windows(ids, mask)[0]])
    calls.clear()
    cache = build(graph_set, ids, mask, tmp_path / "cache", batch_size=1, segment_windows=2)
    assert cache.info["complete"] and [segment.windows for segment in cache.segments] == [2, 2]
    assert sorted(path.name for path in (tmp_path / "cache").iterdir() if not path.name.startswith(".")) == [
        "cache.json", "segment-00000", "segment-00001"]
    np.testing.assert_allclose(cache.passage_hidden(cache.rows(ids, mask)), direct_states(graph_set, ids, mask),
                               atol=1e-5)


@pytest.mark.parametrize("damage", ["flipped byte", "zeroed in place", "truncated", "missing segment",
                                    "missing file"])
def test_damage_is_refused_at_open_or_at_first_read(tiny_graphs, tmp_path, damage):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build(graph_set, ids, mask, tmp_path / "cache")
    hidden = tmp_path / "cache" / "segment-00000" / "passage_hidden.npy"
    data = bytearray(hidden.read_bytes())
    if damage == "flipped byte":
        data[-5] ^= 0x40
        hidden.write_bytes(bytes(data))
    elif damage == "zeroed in place":  # same size, valid header: only the checksum can tell
        hidden.write_bytes(bytes(data[:128]) + bytes(len(data) - 128))
    elif damage == "truncated":
        hidden.write_bytes(bytes(data[:len(data) // 2]))
    elif damage == "missing segment":
        shutil.rmtree(tmp_path / "cache" / "segment-00000")
    else:
        hidden.unlink()
    with pytest.raises(PassageCacheError, match="damaged|missing"):
        cache = load_passage_cache(tmp_path / "cache", graph_set)
        cache.passage_hidden(cache.rows(ids, mask))


def test_refuses_missing_windows_and_foreign_or_broken_caches(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    cache = build(graph_set, ids[:5], mask[:5], tmp_path / "cache")  # windows 0, 1, 2 only
    with pytest.raises(PassageCacheError, match="lacks 2 of the 10 passage windows"):
        cache.rows(ids, mask)

    def edited(name, change):
        copy = tmp_path / name
        shutil.copytree(tmp_path / "cache", copy)
        record = json.loads((copy / "cache.json").read_text())
        change(record)
        (copy / "cache.json").write_text(json.dumps(record))
        return copy

    foreign = edited("foreign", lambda record: record["identity"].update(lower_passage_sha256="0" * 64))
    with pytest.raises(PassageCacheError, match="another lower_passage graph"):
        load_passage_cache(foreign, graph_set)
    future = edited("future", lambda record: record.update(format_version=99))
    with pytest.raises(PassageCacheError, match="format_version 99"):
        load_passage_cache(future, graph_set)
    format_2 = edited("format-2", lambda record: record.update(format_version=2))  # keys were the windows' bytes
    with pytest.raises(PassageCacheError, match="format_version 2; this version reads 3") as error:
        load_passage_cache(format_2, graph_set)
    assert "build it again" in error.value.hint
    sizeless = edited("sizeless", lambda record: record["identity"].pop("vocab_size"))
    with pytest.raises(PassageCacheError, match="identity' lacks vocab_size"):
        load_passage_cache(sizeless, graph_set)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PassageCacheError, match="is not a passage cache"):
        load_passage_cache(tmp_path / "empty", graph_set)
    old = tmp_path / "old"
    old.mkdir()
    (old / "passage_cache.json").write_text("{}")
    with pytest.raises(PassageCacheError, match="is not a passage cache") as error:
        load_passage_cache(old, graph_set)
    assert "earlier version" in error.value.hint
    wrong_shape = tmp_path / "wrong-shape"
    shutil.copytree(tmp_path / "cache", wrong_shape)
    (wrong_shape / "cache.json").write_text("[]")
    with pytest.raises(PassageCacheError, match="not a passage cache record"):
        load_passage_cache(wrong_shape, graph_set)


def test_a_failed_build_leaves_no_directory(tiny_graphs, tmp_path):
    class FailingSession:
        def run(self, *_):
            raise RuntimeError("interrupted")

    ids, mask = windows()
    with pytest.raises(RuntimeError, match="interrupted"):
        build_passage_cache(load_graph_set(tiny_graphs), ids, mask, tmp_path / "cache", lambda path: FailingSession(),
                            progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_disk_without_room_is_refused_before_writing(tiny_graphs, tmp_path, monkeypatch):
    from deformer_bench.passage_cache import store

    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    # 4 distinct windows: 4 x (24 x 32 float32 states + a 16-byte key + 24 uint16 ids + 24 uint8 mask) + 1 MiB
    ids, mask = windows()
    with pytest.raises(PassageCacheError, match=r"needs 1,061,216 bytes \(1.0 MiB\) and .* has 1,000 free"):
        build(load_graph_set(tiny_graphs), ids, mask, tmp_path / "cache" / "deeper")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, dtype", [("passage_hidden", np.float64), ("passage_hidden", np.float16),
                                         ("passage_attention_mask", np.int32)])
def test_a_cache_array_of_another_dtype_is_damaged(tiny_graphs, tmp_path, name, dtype):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build(graph_set, ids, mask, tmp_path / "cache")
    path = tmp_path / "cache" / "segment-00000" / f"{name}.npy"
    np.save(path, np.load(path).astype(dtype))
    with pytest.raises(PassageCacheError, match=f"{name}.npy is damaged"):
        load_passage_cache(tmp_path / "cache", graph_set)


def require_ray():
    """Ray, or a skip; under CI (which installs the test extra) a missing Ray fails instead."""
    if os.environ.get("CI"):
        import ray

        return ray
    return pytest.importorskip("ray")


def test_a_build_on_a_local_ray_stores_what_the_local_build_stores(tiny_graphs, tmp_path):
    ray = require_ray()
    from deformer_bench.passage_cache.ray_engine import RayEngine

    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    local = build(graph_set, ids, mask, tmp_path / "local", dtype="int8", batch_size=2, segment_windows=2)
    try:
        with RayEngine(workers=2) as engine:
            on_ray = build(graph_set, ids, mask, tmp_path / "ray", dtype="int8", batch_size=2, segment_windows=2,
                           engine=engine)
    finally:
        ray.shutdown()  # a failed build's too
    assert on_ray.info["builds"][-1]["engine"]["workers"] == 2 and on_ray.info["complete"]
    assert sorted(segment.name for segment in on_ray.segments) == ["segment-00000", "segment-00001"]
    # the same numbers to the last digit, whichever segment finished first
    assert np.array_equal(on_ray.passage_hidden(on_ray.rows(ids, mask)), local.passage_hidden(local.rows(ids, mask)))
    on_ray.verify()


def test_an_unreachable_ray_address_is_one_clear_error(tiny_graphs, tmp_path):
    require_ray()
    from deformer_bench.passage_cache.ray_engine import RayEngine

    ids, mask = windows()
    with pytest.raises(PassageCacheError, match="cannot start or reach Ray at ray://127.0.0.1:1"):
        build(load_graph_set(tiny_graphs), ids, mask, tmp_path / "cache", engine=RayEngine("ray://127.0.0.1:1"))
    assert not (tmp_path / "cache").exists()


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


def test_states_float16_cannot_hold_and_states_that_are_not_finite_are_refused():
    hidden = np.full((1, 2, 3), 70000.0, dtype=np.float32)
    with pytest.raises(PassageCacheError, match="beyond float16's 65504"):
        encode(hidden, "float16")
    assert encode(hidden, "int8")["passage_scale"][0, 0] == pytest.approx(70000 / 127)
    hidden[0, 1, 2] = np.nan
    for dtype in ("float32", "float16", "int8"):
        with pytest.raises(PassageCacheError, match="not finite"):
            encode(hidden, dtype)


def test_rows_outside_the_cache_are_refused(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    cache = build(graph_set, ids, mask, tmp_path / "cache")
    for rows in ([-1], [4], [0, 9]):
        with pytest.raises(PassageCacheError, match="has rows 0..3"):
            cache.passage_hidden(rows)
    assert cache.passage_hidden([]).shape == (0, 24, 32)


def test_maps_are_capped_and_a_system_limit_is_not_called_damage(tiny_graphs, tmp_path, monkeypatch):
    import errno

    from deformer_bench.passage_cache import store

    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build(graph_set, ids, mask, tmp_path / "cache", segment_windows=1)  # 4 segments of 1 window
    cache = load_passage_cache(tmp_path / "cache", graph_set)
    assert all(not segment.arrays for segment in cache.segments)  # nothing mapped at open
    monkeypatch.setattr(cache, "MAPPED_SEGMENTS", 2)
    expected = direct_states(graph_set, ids, mask)
    np.testing.assert_allclose(cache.passage_hidden(cache.rows(ids, mask)), expected, atol=1e-5)
    assert sum(bool(segment.arrays) for segment in cache.segments) == 2  # the two read last
    np.testing.assert_allclose(cache.passage_hidden(cache.rows(ids, mask)), expected, atol=1e-5)  # remapped

    def out_of_files(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(store.np, "load", out_of_files)
    fresh = load_passage_cache(tmp_path / "cache", graph_set)
    with pytest.raises(PassageCacheError, match="a limit of this system, not damage") as error:
        fresh.rows(ids, mask)
    assert "ulimit" in error.value.hint and "remove the cache directory" not in error.value.hint


def test_a_truncated_array_is_found_at_open(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build(graph_set, ids, mask, tmp_path / "cache")
    path = tmp_path / "cache" / "segment-00000" / "passage_hidden.npy"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(PassageCacheError, match="truncated"):
        load_passage_cache(tmp_path / "cache", graph_set)


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
