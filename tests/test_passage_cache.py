import json
import shutil
from types import SimpleNamespace

import numpy as np
import onnxruntime
import pytest

from deformer_bench.errors import PassageCacheError
from deformer_bench.serving import evaluation_session
from deformer_bench.passage_cache import build_passage_cache, distinct_windows, load_passage_cache
from exporters.manifest import load_graph_set


def windows():
    """[10, 24] passage ids and mask for the tiny graph set (vocab 120): 4 distinct windows, repeated as SQuAD
    repeats a paragraph's windows for each of its questions."""
    distinct_ids = np.random.default_rng(0).integers(1, 120, size=(4, 24))
    distinct_mask = np.ones_like(distinct_ids)
    distinct_mask[0, 20:] = 0  # one padded window
    distinct_ids[0, 20:] = 0
    order = np.array([0, 0, 1, 2, 1, 0, 3, 3, 2, 1])
    return distinct_ids[order], distinct_mask[order]


def test_distinct_windows_map_every_window_back():
    ids, mask = windows()
    first, row_of = distinct_windows(ids, mask)
    assert len(first) == 4 and len(row_of) == 10
    assert (ids[first][row_of] == ids).all() and (mask[first][row_of] == mask).all()
    # the same ids under another mask are another window
    mask2 = mask.copy()
    mask2[2, -1] = 0  # a window 1
    assert len(distinct_windows(ids, mask2)[0]) == 5


def test_cached_states_are_lower_passage_run_on_every_window(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    cache = build_passage_cache(graph_set, ids, mask, tmp_path / "cache", evaluation_session, batch_size=3,
                                progress=False)
    assert cache.info["windows"] == 4 and cache.info["layer"] == 1
    direct = onnxruntime.InferenceSession(str(graph_set.path("lower_passage"))).run(
        None, {"passage_input_ids": ids, "passage_attention_mask": mask})[0]
    np.testing.assert_allclose(cache.passage_hidden(cache.rows(ids, mask)), direct, atol=1e-5)
    reopened = load_passage_cache(tmp_path / "cache", graph_set)
    assert np.array_equal(reopened.passage_hidden(reopened.rows(ids[:3], mask[:3])), cache.passage_hidden([0, 0, 1]))
    # the same tokens as int32 (another tokenizer's output dtype) find the same rows
    assert (reopened.rows(ids.astype(np.int32), mask.astype(np.int32)) == reopened.rows(ids, mask)).all()
    with pytest.raises(PassageCacheError, match="exists"):
        build_passage_cache(graph_set, ids, mask, tmp_path / "cache", evaluation_session, progress=False)


def test_refuses_missing_windows_and_foreign_or_broken_caches(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    cache = build_passage_cache(graph_set, ids[:5], mask[:5], tmp_path / "cache", evaluation_session,
                                progress=False)  # windows 0, 1, 2 only
    with pytest.raises(PassageCacheError, match="lacks 2 of the 10 passage windows"):
        cache.rows(ids, mask)

    def edited(name, change):
        copy = tmp_path / name
        shutil.copytree(tmp_path / "cache", copy)
        info = json.loads((copy / "passage_cache.json").read_text())
        change(info)
        (copy / "passage_cache.json").write_text(json.dumps(info))
        return copy

    foreign = edited("foreign", lambda info: info.update(lower_passage_sha256="0" * 64))
    with pytest.raises(PassageCacheError, match="another lower_passage graph"):
        load_passage_cache(foreign, graph_set)
    future = edited("future", lambda info: info.update(format_version=99))
    with pytest.raises(PassageCacheError, match="format_version 99"):
        load_passage_cache(future, graph_set)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PassageCacheError, match="is not a passage cache"):
        load_passage_cache(tmp_path / "empty", graph_set)
    wrong_shape = tmp_path / "wrong-shape"
    shutil.copytree(tmp_path / "cache", wrong_shape)
    (wrong_shape / "passage_cache.json").write_text("[]")
    with pytest.raises(PassageCacheError, match="not a passage cache record"):
        load_passage_cache(wrong_shape, graph_set)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_array_file_is_one_clear_error(tiny_graphs, tmp_path, damage):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build_passage_cache(graph_set, ids, mask, tmp_path / "cache", evaluation_session, progress=False)
    hidden = tmp_path / "cache" / "passage_hidden.npy"
    data = hidden.read_bytes()
    hidden.write_bytes({"truncated": data[:len(data) // 2], "garbage": b"not numpy at all" * 10, "empty": b""}[damage])
    with pytest.raises(PassageCacheError, match="passage_hidden.npy is damaged"):
        load_passage_cache(tmp_path / "cache", graph_set)


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
    import deformer_bench.passage_cache as passage_cache

    monkeypatch.setattr(passage_cache.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    ids, mask = windows()  # 4 distinct windows: 4 x 24 x 32 float32 states + 2 x 4 x 24 int64 ids and mask
    with pytest.raises(PassageCacheError, match=r"needs 13,824 bytes \(13.5 KiB\) and .* has 1,000 free"):
        build_passage_cache(load_graph_set(tiny_graphs), ids, mask, tmp_path / "cache" / "deeper", evaluation_session,
                            progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, dtype", [("passage_hidden", np.float64), ("passage_hidden", np.float16),
                                         ("passage_attention_mask", np.int32)])
def test_a_cache_array_of_another_dtype_is_damaged(tiny_graphs, tmp_path, name, dtype):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    build_passage_cache(graph_set, ids, mask, tmp_path / "cache", evaluation_session, progress=False)
    path = tmp_path / "cache" / f"{name}.npy"
    np.save(path, np.load(path).astype(dtype))
    with pytest.raises(PassageCacheError, match=f"{name}.npy is damaged"):
        load_passage_cache(tmp_path / "cache", graph_set)
