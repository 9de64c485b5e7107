"""An unfinished cache goes on only with the build it was started for; only that build marks it complete (issue 22,
finding 3)."""

import json

import numpy as np
import pytest

from deformer_bench.errors import PassageCacheError
from deformer_bench.passage_cache import build_passage_cache, build_passage_cache_from_shards, load_passage_cache
from deformer_bench.serving import evaluation_session
from exporters.manifest import load_graph_set

STARTED_BY = "deformer-cache build /graphs --passages /all.jsonl --out /cache --doc-stride 128"


def distinct_windows(count: int, seed: int = 0):
    ids = np.random.default_rng(seed).integers(1, 120, size=(count, 24))
    return ids, np.ones_like(ids)


class DiesOnTheThirdBatch:
    """A lower_passage session interrupted (as Ctrl-C or SIGTERM would) at its third batch."""

    def __init__(self, path):
        self.session, self.calls = evaluation_session(path), 0

    def run(self, names, feed):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return self.session.run(names, feed)


def build(graph_set, ids, mask, out, **options):
    return build_passage_cache(graph_set, ids, mask, out, evaluation_session, progress=False, **options)


def killed_build(graph_set, ids, mask, out, **options):
    """An unfinished cache: two of len(ids) windows stored, one segment each."""
    with pytest.raises(KeyboardInterrupt):
        build_passage_cache(graph_set, ids, mask, out, DiesOnTheThirdBatch, batch_size=1, segment_windows=1,
                            progress=False, **options)
    record = json.loads((out / "cache.json").read_text())
    assert not record["complete"] and record["windows"] == 2
    return record


def test_an_unfinished_cache_refuses_other_passages_and_goes_on_with_its_own(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = distinct_windows(6)
    cache = tmp_path / "cache"
    started = killed_build(graph_set, ids, mask, cache, command=STARTED_BY)
    assert started["unfinished_build"] == {"windows_sha256": started["unfinished_build"]["windows_sha256"],
                                           "windows": 6, "append": False, "command": STARTED_BY}
    record_bytes = (cache / "cache.json").read_bytes()
    # fewer passages (the issue: a smaller file recorded complete with 2,077 of 13,302 windows), other ones, the
    # stored ones only, an append of the rest: all refused, naming the command that goes on with the build
    for other_ids, options in ((ids[:3], {}), (distinct_windows(6, seed=1)[0], {}), (ids[:2], {}),
                               (ids[2:], {"append": True}), (ids[:3], {"append": True})):
        with pytest.raises(PassageCacheError, match="holds an unfinished build of other windows") as error:
            build(graph_set, other_ids, np.ones_like(other_ids), cache, **options)
        assert STARTED_BY in error.value.hint
        assert (cache / "cache.json").read_bytes() == record_bytes  # nothing written
    assert sorted(path.name for path in cache.iterdir() if not path.name.startswith(".")) == [
        "cache.json", "segment-00000", "segment-00001"]
    # the same windows, in another order, repeated, or given by another command: the build goes on and finishes
    order = [5, 4, 3, 2, 1, 0, 0, 3]
    done = build(graph_set, ids[order], mask[order], cache, command="another command")
    assert done.info["complete"] and done.windows == 6 and done.info["unfinished_build"] is None
    assert done.info["builds"][-1]["new_windows"] == 4 and done.info["builds"][-1]["distinct_windows"] == 6
    assert (done.rows(ids, mask) >= 0).all()


def test_a_killed_append_leaves_the_cache_complete_and_other_appends_go_on(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = distinct_windows(8)
    cache = tmp_path / "cache"
    build(graph_set, ids[:2], mask[:2], cache)
    with pytest.raises(KeyboardInterrupt):
        build_passage_cache(graph_set, ids, mask, cache, DiesOnTheThirdBatch, batch_size=1, segment_windows=1,
                            progress=False, append=True, command="the append")
    record = load_passage_cache(cache).info
    assert record["complete"] and record["unfinished_build"]["append"] and record["windows"] == 4
    assert build(graph_set, ids[:2], mask[:2], cache, append=True).info["unfinished_build"] is None
    assert build(graph_set, ids, mask, cache, append=True).windows == 8


def test_a_build_whose_passages_change_between_plan_and_walk_is_not_marked_complete(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = distinct_windows(4)
    reads = []

    def shards():  # the first read (the plan) sees 4 windows, the second (the build) 3 of them
        reads.append(None)
        return [(ids, mask)] if len(reads) == 1 else [(ids[:3], mask[:3])]

    with pytest.raises(PassageCacheError, match="changed while the build read them: 4 distinct windows when "
                                                "planned, 3"):
        build_passage_cache_from_shards(graph_set, shards, tmp_path / "cache", evaluation_session, progress=False)
    record = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert not record["complete"] and record["windows"] == 3
    with pytest.raises(TypeError, match="read twice"):
        build_passage_cache_from_shards(graph_set, iter([(ids, mask)]), tmp_path / "other", evaluation_session)


def test_a_cache_started_by_a_reader_is_removed_when_its_build_is_interrupted(tiny_graphs, tmp_path):
    """keep_unfinished=False (deformer-answer, deformer-eval): a cache this call started goes again; one it went
    on with keeps what it had and gained (issue 22, finding 8)."""
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = distinct_windows(6)
    for where in ("new", "empty"):
        if where == "empty":
            (tmp_path / where).mkdir()  # a folder the user made for it: it stays, empty
        with pytest.raises(KeyboardInterrupt):
            build_passage_cache(graph_set, ids, mask, tmp_path / where, DiesOnTheThirdBatch, batch_size=1,
                                segment_windows=1, progress=False, keep_unfinished=False)
    assert not (tmp_path / "new").exists()
    assert [path.name for path in (tmp_path / "empty").iterdir() if not path.name.startswith(".")] == []
    killed_build(graph_set, ids, mask, tmp_path / "theirs")
    with pytest.raises(KeyboardInterrupt):  # the third batch of this run is the 5th window: 4 stored, kept
        build_passage_cache(graph_set, ids, mask, tmp_path / "theirs", DiesOnTheThirdBatch, batch_size=1,
                            segment_windows=1, progress=False, keep_unfinished=False)
    assert json.loads((tmp_path / "theirs" / "cache.json").read_text())["windows"] == 4
