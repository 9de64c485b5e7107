"""The passage cache's reads (deformer_bench/passage_cache/store.py): each distinct window stored once, in narrow
types, under its digest key; the states read back are lower_passage's; windows the cache lacks, caches of another
graph or format, and rows outside it refused; no room refused up front; at most MAPPED_SEGMENTS segments mapped."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.contracts.manifest import load_graph_set
from deformer_bench.passage_cache import distinct_windows, load_passage_cache
from tests.passage_cache.conftest import build, direct_states, windows


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


def test_a_disk_without_room_is_refused_before_writing(tiny_graphs, tmp_path, monkeypatch):
    from deformer_bench.passage_cache import store

    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    # 4 distinct windows: 4 x (24 x 32 float32 states + a 16-byte key + 24 uint16 ids + 24 uint8 mask) + 1 MiB
    ids, mask = windows()
    with pytest.raises(PassageCacheError, match=r"needs 1,061,216 bytes \(1.0 MiB\) and .* has 1,000 free"):
        build(load_graph_set(tiny_graphs), ids, mask, tmp_path / "cache" / "deeper")
    assert list(tmp_path.iterdir()) == []


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

    from deformer_bench.passage_cache import cache_files

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

    monkeypatch.setattr(cache_files.np, "load", out_of_files)  # what opens an array
    fresh = load_passage_cache(tmp_path / "cache", graph_set)
    with pytest.raises(PassageCacheError, match="a limit of this system, not damage") as error:
        fresh.rows(ids, mask)
    assert "ulimit" in error.value.hint and "remove the cache directory" not in error.value.hint


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_reads_within_one_segment_or_across_give_float32_rows_in_the_order_asked(tiny_graphs, tmp_path, dtype):
    """A read whose rows fall in one segment is that segment's read itself (no second copy): float32 whatever the
    stored dtype, in the order asked, duplicates kept, its own memory; the same rows as a read across segments."""
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    cache = build(graph_set, ids, mask, tmp_path / dtype, dtype=dtype, segment_windows=2)
    first, _ = distinct_windows(ids, mask)
    rows = cache.rows(ids[first], mask[first])
    assert len(cache.segments) == 2 and sorted(rows.tolist()) == [0, 1, 2, 3]
    everything = cache.passage_hidden(rows)
    assert everything.dtype == np.float32
    for pick in ([1, 0], [0, 0, 1], [3, 2, 3]):  # rows 0-1 and 2-3: each pick within one segment
        got = cache.passage_hidden(np.asarray(pick))
        assert got.dtype == np.float32 and got.flags.c_contiguous and got.flags.writeable
        np.testing.assert_array_equal(got, everything[np.argsort(rows)][pick])
    assert cache.passage_hidden(np.zeros(0, np.int64)).shape == (0, 24, 32)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_passage_hidden_reads_only_the_positions_asked_for(tiny_graphs, tmp_path, dtype):
    """A server at real lengths asks for its batch's widest window only: passage_hidden(rows, positions) is the whole
    windows' states cut there, its own contiguous memory, from one segment or several; a width outside 1..Lp is
    refused."""
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    cache = build(graph_set, ids, mask, tmp_path / dtype, dtype=dtype, segment_windows=2)
    rows = cache.rows(ids, mask)
    whole = cache.passage_hidden(rows)
    assert len(np.unique(np.searchsorted(cache.offsets, rows, side="right"))) == 2  # rows of both segments
    for positions in (1, 7, 23, 24, np.int64(24)):
        cut = cache.passage_hidden(rows, positions)
        assert cut.shape == (len(rows), positions, 32) and cut.dtype == np.float32 and cut.flags.c_contiguous
        np.testing.assert_array_equal(cut, whole[:, :positions])
        one = cache.passage_hidden(rows[2:3], positions)  # a served question's single window
        assert one.flags.c_contiguous
        np.testing.assert_array_equal(one, whole[2:3, :positions])
    assert cache.passage_hidden(np.zeros(0, np.int64), 5).shape == (0, 5, 32)
    for positions in (0, 25, -3, 2.5, True, "8"):
        with pytest.raises(PassageCacheError, match="positions must be a whole number from 1 to"):
            cache.passage_hidden(rows, positions)
