"""Building a passage cache (deformer_bench/passage_cache/build.py): an append adds only new windows as a new
segment, a killed build goes on from its last complete segment, a failed one leaves no directory."""

import json

import numpy as np
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.contracts.manifest import load_graph_set
from deformer_bench.passage_cache import build_passage_cache, distinct_windows, load_passage_cache
from deformer_bench.serving import evaluation_session
from tests.passage_cache.conftest import build, direct_states, windows


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


def test_a_failed_build_leaves_no_directory(tiny_graphs, tmp_path):
    class FailingSession:
        def run(self, *_):
            raise RuntimeError("interrupted")

    ids, mask = windows()
    with pytest.raises(RuntimeError, match="interrupted"):
        build_passage_cache(load_graph_set(tiny_graphs), ids, mask, tmp_path / "cache", lambda path: FailingSession(),
                            progress=False)
    assert list(tmp_path.iterdir()) == []
