"""api.caching's build engine: the request's `engine` made into one (this process's, or Ray's), used for the build,
and closed however the build ends."""

import pytest

from deformer_bench.api import caching
from deformer_bench.api.caching import CacheBuildRequest, build_cache, requested_engine
from deformer_bench.contracts.errors import DeformerBenchError, PassageCacheError
from deformer_bench.passage_cache import LocalEngine
from deformer_bench.serving import evaluation_session


def test_a_request_names_its_engine(tmp_path):
    local = requested_engine(CacheBuildRequest("graphs", "passages.jsonl", tmp_path / "cache"))
    assert isinstance(local, LocalEngine) and local.describe() == "local"
    with pytest.raises(DeformerBenchError, match="--address and --workers belong to --engine ray"):
        requested_engine(CacheBuildRequest("graphs", "passages.jsonl", tmp_path / "cache", workers=2))


def test_the_engine_builds_and_is_closed_however_the_build_ends(tiny_student_graphs, small_train_file, tmp_path,
                                                                monkeypatch):
    closed = []

    class ClosingEngine(LocalEngine):
        def close(self):
            closed.append(True)

    monkeypatch.setattr(caching, "requested_engine", lambda request: ClosingEngine(evaluation_session))
    request = CacheBuildRequest(tiny_student_graphs, small_train_file, tmp_path / "cache", doc_stride=16,
                                progress=False)
    result = build_cache(request)
    assert result.build["engine"] == "local" and result.cache_windows > 0 and closed == [True]
    with pytest.raises(PassageCacheError, match="stores float32, not int8"):  # refused under the build's lock
        build_cache(CacheBuildRequest(tiny_student_graphs, small_train_file, tmp_path / "cache", dtype="int8",
                                      doc_stride=16, append=True, progress=False))
    assert closed == [True, True]
