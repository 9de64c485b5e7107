"""deformer-bench --served-cache (api.served_codec): a learned codec's passage cache of the graph set measured gives
its codec and first windows' codes to the configs its lower_passage built; a cache of another graph set, one that
stores states rather than codes, or a bench without the graph set is refused before anything is timed; serving
needs no faiss."""

import dataclasses
import sys

import numpy as np
import pytest

from deformer_bench.api.benchmarking import BenchmarkRequest, existing_configs
from deformer_bench.api.served_codec import STAGED_WINDOWS, check_served_cache_request, with_served_codec
from deformer_bench.contracts.errors import ConfigError, ManifestError, PassageCacheError
from deformer_bench.contracts.manifest import load_graph_set
from deformer_bench.passage_cache import load_passage_cache
from deformer_bench.runtime.codec_decode import decode_windows, make_decoder

pytest.importorskip("faiss")  # building the pq cache needs it (the test extra installs it); serving does not

from tests.passage_cache.test_codec_cache import build, windows  # noqa: E402  (after the skip: it needs faiss)


@pytest.fixture(scope="module")
def pq_cache(tiny_graphs, tmp_path_factory):
    ids, mask = windows(1000)
    directory = tmp_path_factory.mktemp("pq") / "cache"
    build(load_graph_set(tiny_graphs), ids, mask, directory, dtype="pq", codec_settings={"m": 8})
    return directory


@pytest.fixture(scope="module")
def float32_cache(tiny_graphs, tmp_path_factory):
    ids, mask = windows(10)
    directory = tmp_path_factory.mktemp("float32") / "cache"
    build(load_graph_set(tiny_graphs), ids, mask, directory)
    return directory


def served(tiny_graphs, cache, configs=None):
    request = BenchmarkRequest(graphs=(tiny_graphs,), served_cache=cache)
    return with_served_codec(request, existing_configs(request) if configs is None else configs)


def test_the_cache_of_the_graph_set_measured_gives_its_codec_and_first_windows(tiny_graphs, pq_cache):
    [config] = served(tiny_graphs, pq_cache)
    codec = config.served_codec
    cache = load_passage_cache(pq_cache)
    assert (codec.name, codec.settings, codec.cache) == ("pq", cache.codec.settings, str(pq_cache))
    assert codec.description == "pq m=8 transform=none alpha=0.1" and codec.code_bytes_per_token == 8.0
    assert sorted(codec.codebook) == sorted(cache.codec.codebook)
    assert list(codec.codes) == ["codes"]
    np.testing.assert_array_equal(codec.codes["codes"], cache.array(0, "passage_codes")[:STAGED_WINDOWS])
    # what the runner decodes is what the cache reader decodes (every position, padding included)
    decoded = decode_windows(make_decoder(codec.name, codec.settings, codec.codebook), codec.codes)
    np.testing.assert_allclose(decoded, cache.codec.decode(codec.codes), rtol=0, atol=1e-6)


def test_the_product_goes_in_upper_s_graph_only_for_pq_with_a_transform(tiny_graphs, pq_cache, tmp_path):
    """A server leaves a pq transform's product to upper's graph (exporters/codec_upper.py), made and loaded once
    before anything is timed; plain pq (its coefficients are the states) and a graph set in the ORT format only (onnx
    cannot edit it) decode in numpy; a damaged upper.onnx is refused then, with exit 2."""
    import shutil

    import onnx

    from deformer_bench.api.served_codec import coded_upper

    [config] = served(tiny_graphs, pq_cache)
    assert config.served_codec.coded_upper is None and config.served_codec.record()["product"] == "numpy"
    rng = np.random.default_rng(0)
    product = (rng.standard_normal((32, 32)).astype(np.float32), np.zeros(32, np.float32))
    graph = coded_upper(product, config)
    assert "passage_coefficients" in [graph_input.name for graph_input in onnx.load_from_string(graph).graph.input]
    assert coded_upper(None, config) is None
    ort_only = tmp_path / "graphs"
    ort_only.mkdir()
    assert coded_upper(product, dataclasses.replace(config, graphs_dir=ort_only)) is None
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_graphs, damaged)
    (damaged / "upper.onnx").write_bytes((tiny_graphs / "upper.onnx").read_bytes()[:200])
    with pytest.raises(ManifestError, match="cannot be read as an ONNX graph") as refused:
        coded_upper(product, dataclasses.replace(config, graphs_dir=damaged))
    assert refused.value.exit_code == 2


def test_only_the_graph_sets_whose_lower_passage_built_the_cache_serve_from_it(tiny_graphs, pq_cache):
    [config] = existing_configs(BenchmarkRequest(graphs=(tiny_graphs,)))
    other = dataclasses.replace(config, label="other", manifest=with_lower_passage(config.manifest, "0" * 64))
    mine, theirs = served(tiny_graphs, pq_cache, [config, other])
    assert mine.served_codec is not None and theirs.served_codec is None


def with_lower_passage(manifest: dict, sha256: str) -> dict:
    graphs = {**manifest["graphs"], "lower_passage": {**manifest["graphs"]["lower_passage"], "sha256": sha256}}
    return {**manifest, "graphs": graphs}


def test_a_cache_of_another_graph_set_is_refused(tiny_graphs, pq_cache):
    [config] = existing_configs(BenchmarkRequest(graphs=(tiny_graphs,)))
    other = dataclasses.replace(config, manifest=with_lower_passage(config.manifest, "0" * 64))
    with pytest.raises(PassageCacheError, match="was built with another lower_passage graph") as refused:
        served(tiny_graphs, pq_cache, [other])
    assert refused.value.exit_code == 2


def test_a_cache_of_states_is_not_a_codec_to_serve(tiny_graphs, float32_cache):
    with pytest.raises(PassageCacheError, match="stores float32 states, not a learned codec's codes") as refused:
        served(tiny_graphs, float32_cache)
    assert "--dtype pq, rq or binary" in refused.value.hint and refused.value.exit_code == 2


def test_a_directory_that_is_no_cache_is_refused(tiny_graphs, tmp_path):
    with pytest.raises(PassageCacheError, match="is not a passage cache"):
        served(tiny_graphs, tmp_path)


def test_the_served_cache_needs_the_graph_set_it_was_built_with(pq_cache):
    with pytest.raises(ConfigError, match="--served-cache serves states stored with a graph set's lower_passage"):
        check_served_cache_request(BenchmarkRequest(arch="minilm-l6", served_cache=pq_cache))
    check_served_cache_request(BenchmarkRequest(arch="minilm-l6"))  # nothing asked, nothing checked


def test_serving_a_codec_needs_no_faiss(tiny_graphs, pq_cache, monkeypatch):
    """faiss trains and encodes; a server (and the runner) only decodes, with numpy."""
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    [config] = served(tiny_graphs, pq_cache)
    codec = config.served_codec
    decoded = decode_windows(make_decoder(codec.name, codec.settings, codec.codebook), codec.codes)
    assert decoded.shape == (STAGED_WINDOWS, 24, 32) and np.isfinite(decoded).all()


def test_a_cache_without_windows_is_refused(tiny_graphs, pq_cache, tmp_path):
    """A build stopped before its first segment leaves a cache with a codebook and no windows: nothing to serve."""
    import json
    import shutil

    empty = tmp_path / "cache"
    shutil.copytree(pq_cache, empty)
    record = json.loads((empty / "cache.json").read_text())
    (empty / "cache.json").write_text(json.dumps({**record, "segments": [], "windows": 0}))
    with pytest.raises(PassageCacheError, match="holds no windows") as refused:
        served(tiny_graphs, empty)
    assert refused.value.exit_code == 2
