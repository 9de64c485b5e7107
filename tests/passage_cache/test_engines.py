"""The build engines behind one interface (engines.BuildEngine): a build hands its segments to the engine it is
given (this process's LocalEngine by default), records what that engine describes, hands it a learned codec only
where it can encode one, and refuses such a cache with an engine that cannot, before any file, in the words it
always used."""

import numpy as np
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.contracts.manifest import load_graph_set
from deformer_bench.passage_cache import BuildEngine, LocalEngine, build_passage_cache_from_shards, load_passage_cache
from deformer_bench.serving import evaluation_session
from tests.passage_cache.conftest import build, direct_states, windows


class RecordingEngine(BuildEngine):
    """Writes as the local engine does, and keeps what the build asked of it."""

    def __init__(self, encodes_learned_codecs: bool = False):
        self.local = LocalEngine(evaluation_session)
        self.encodes_learned_codecs = encodes_learned_codecs
        self.segments, self.codecs = [], []

    def describe(self) -> dict:
        return {"engine": "ray", "address": "recording"}  # a description cache.json's schema takes (schema.py)

    def build(self, graph_set, chunks, out_dir, batch_size, dtype, listed, progress, codec=None) -> None:
        self.segments += [index for index, _, _ in chunks]
        self.codecs.append(codec)
        self.local.build(graph_set, chunks, out_dir, batch_size, dtype, listed, progress, codec)


def test_a_build_writes_through_the_engine_it_is_given_and_records_its_description(tiny_graphs, tmp_path):
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()  # windows 0 0 1 2 1 | 0 3 3 2 1: three new in the first shard, one in the second
    engine = RecordingEngine()
    cache = build_passage_cache_from_shards(graph_set, [(ids[:5], mask[:5]), (ids[5:], mask[5:])],
                                            tmp_path / "cache", evaluation_session, progress=False,
                                            segment_windows=2, engine=engine)
    assert engine.segments == [0, 1, 2] and engine.codecs == [None, None]
    assert cache.info["builds"][-1]["engine"] == {"engine": "ray", "address": "recording"}
    np.testing.assert_allclose(cache.passage_hidden(cache.rows(ids, mask)), direct_states(graph_set, ids, mask),
                               atol=1e-5)
    # no engine given: this process's, recorded as "local"
    assert build(graph_set, ids, mask, tmp_path / "local").info["builds"][-1]["engine"] == "local"


def test_a_learned_codec_is_refused_with_an_engine_that_cannot_encode_it_before_any_file(tiny_graphs, tmp_path):
    pytest.importorskip("faiss")  # the codec's own check comes first
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    engine = RecordingEngine()
    with pytest.raises(PassageCacheError) as refused:
        build(graph_set, ids, mask, tmp_path / "cache", dtype="binary", engine=engine)
    assert refused.value.message == ("a binary cache is built with --engine local only (its Ray workers would need "
                                     "its codebook)") and refused.value.hint == "build it with --engine local"
    assert not (tmp_path / "cache").exists() and engine.segments == []


def test_an_engine_that_encodes_learned_codecs_is_handed_the_codec_and_an_append_checks_the_engine(tiny_graphs,
                                                                                                     tmp_path):
    pytest.importorskip("faiss")
    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    engine = RecordingEngine(encodes_learned_codecs=True)
    cache = build(graph_set, ids, mask, tmp_path / "cache", dtype="binary", engine=engine)
    assert [codec.name for codec in engine.codecs] == ["binary"] and cache.info["codec"]["name"] == "binary"
    more = np.random.default_rng(1).integers(1, 120, size=(2, 24))
    with pytest.raises(PassageCacheError, match=r"^a binary cache is built with --engine local only"):
        build(graph_set, more, np.ones_like(more), tmp_path / "cache", append=True, engine=RecordingEngine())
    assert load_passage_cache(tmp_path / "cache", graph_set).windows == cache.windows  # the append wrote nothing
