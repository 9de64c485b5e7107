"""A passage cache of a learned codec (issue 25): built with a training pass on the build's own passage states, its
codebook written and checksummed beside the segments, windows decoded in the query path within each codec's error
bound; and the refusals, each leaving nothing written: no faiss, a sample too small, an append with another codec or
settings, a damaged codebook."""

import hashlib
import json
import sys

import numpy as np
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.passage_cache import build_passage_cache, load_passage_cache
from deformer_bench.passage_cache.quantizers import FAISS_EXTRA, CodecError
from deformer_bench.serving import evaluation_session
from deformer_bench.contracts.manifest import load_graph_set

pytest.importorskip("faiss")  # the test extra installs it; the refusal without it is tested by hiding it

LENGTH = 24  # tiny_graphs' passage length (hidden size 32)
# (dtype, settings, the relative squared error of the valid tokens' decoded states it must stay under: ~2x what
# it measured on these windows)
CODECS = [("pq", {"m": 8}, 0.12),  # measured 0.063
          ("rq", {"centroids": 16, "bits": 2}, 0.17),  # 0.085
          ("binary", {}, 0.6)]  # 0.35


def windows(count: int, seed: int = 0):
    """The first `count` (at most 1,200) of a draw of random windows of 12 to 24 tokens (padding after them), ids
    and mask [count, 24]."""
    rng = np.random.default_rng(seed)
    mask = (np.arange(LENGTH)[None, :] < rng.integers(12, LENGTH + 1, size=(1200, 1))).astype(np.int64)
    return (rng.integers(1, 120, size=(1200, LENGTH)) * mask)[:count], mask[:count]


def build(graph_set, ids, mask, out, **options):
    return build_passage_cache(graph_set, ids, mask, out, evaluation_session, progress=False, **options)


def relative_error(cache, reference, ids, mask) -> float:
    decoded = cache.passage_hidden(cache.rows(ids, mask))
    states = reference.passage_hidden(reference.rows(ids, mask))
    valid = mask.astype(bool)
    centered = states[valid] - states[valid].mean(axis=0)
    return float(((decoded - states)[valid] ** 2).sum() / (centered ** 2).sum())


def listing(directory):
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


@pytest.fixture(scope="module")
def graph_set(tiny_graphs):
    return load_graph_set(tiny_graphs)


@pytest.fixture(scope="module")
def float32_cache(graph_set, tmp_path_factory):
    ids, mask = windows(1200)
    return build(graph_set, ids, mask, tmp_path_factory.mktemp("float32") / "cache")


@pytest.fixture(scope="module")
def pq_cache(graph_set, tmp_path_factory):
    ids, mask = windows(1000)
    return build(graph_set, ids, mask, tmp_path_factory.mktemp("pq") / "cache", dtype="pq", codec_settings={"m": 8})


@pytest.mark.parametrize("dtype, settings, bound", CODECS)
def test_a_codec_cache_decodes_each_window_within_its_bound(graph_set, float32_cache, tmp_path, dtype, settings,
                                                            bound):
    ids, mask = windows(1000)
    cache = build(graph_set, ids, mask, tmp_path / "cache", dtype=dtype, codec_settings=settings)
    record = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert record["format_version"] == 5 and record["dtype"] == dtype and record["codec"]["name"] == dtype
    assert record["codec"]["sample"] == {"windows": 1000, "tokens": int(mask.sum()), "seed": 0}
    for name, sha256 in record["codec"]["codebook"].items():  # written whole, checksummed like a segment
        assert hashlib.sha256((tmp_path / "cache" / "codebook" / f"{name}.npy").read_bytes()).hexdigest() == sha256
    segment = sorted(path.name for path in (tmp_path / "cache" / "segment-00000").iterdir())
    assert "passage_length.npy" in segment and "passage_attention_mask.npy" not in segment  # the mask as a length
    assert "passage_hidden.npy" not in segment
    error = relative_error(cache, float32_cache, ids[:300], mask[:300])
    assert error < bound, error
    decoded = cache.passage_hidden(cache.rows(ids[:5], mask[:5]))
    assert decoded.dtype == np.float32 and (decoded[mask[:5] == 0] == 0).all()  # padding is not decoded


def test_info_reports_bytes_per_token_of_states_and_of_the_rest_apart(pq_cache):
    from deformer_bench.api.caching import cache_info

    info = cache_info(pq_cache.directory)
    tokens = pq_cache.windows * LENGTH
    assert info["codec"]["name"] == "pq" and info["codec"]["settings"]["m"] == 8
    assert info["state_bytes_per_window"] == 8 * LENGTH
    headers = 128 * len(pq_cache.segments) / tokens  # each .npy's header
    assert abs(info["state_bytes_per_token"] - 8) <= headers  # m bytes a token
    # uint16 ids, and a window's 16-byte key and uint16 length spread over its tokens; no mask
    assert abs(info["other_bytes_per_token"] - (2 + 18 / LENGTH)) <= 3 * headers + 1e-9
    assert info["codebook_bytes"] > 0 and info["bytes_on_disk"] > info["codebook_bytes"]


def test_an_append_encodes_its_new_windows_with_the_caches_codebook(graph_set, float32_cache, tmp_path):
    ids, mask = windows(1200)
    out = tmp_path / "cache"
    build(graph_set, ids[:1000], mask[:1000], out, dtype="pq", codec_settings={"m": 8})
    codebook = {path.name: path.read_bytes() for path in (out / "codebook").iterdir()}
    grown = build(graph_set, ids, mask, out, append=True)  # the cache's dtype and codec
    assert grown.windows == 1200 and grown.info["builds"][-1]["new_windows"] == 200
    assert {path.name: path.read_bytes() for path in (out / "codebook").iterdir()} == codebook
    assert relative_error(grown, float32_cache, ids[1000:], mask[1000:]) < 0.12


@pytest.mark.parametrize("dtype, settings, match", [
    ("rq", {"centroids": 16}, "stores pq, not rq"),
    ("pq", {"m": 4}, "stores pq m=8 .*, not pq m=4"),
    ("float32", None, "stores pq, not float32")])
def test_an_append_with_another_codec_or_settings_is_refused_and_writes_nothing(pq_cache, graph_set, tmp_path, dtype,
                                                                                settings, match):
    import shutil

    out = tmp_path / "cache"
    shutil.copytree(pq_cache.directory, out)
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    ids, mask = windows(50, seed=1)
    with pytest.raises(PassageCacheError, match=match):
        build(graph_set, ids, mask, out, dtype=dtype, codec_settings=settings, append=True)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_an_append_naming_only_the_dtype_uses_the_caches_settings_whatever_the_defaults(pq_cache, graph_set, tmp_path):
    """pq's default m=96 does not fit hidden size 32: `--append --dtype pq` (the settings left out: the cache's)
    was refused for it; and a metric given to such an append is refused (the cache has its codebook)."""
    import shutil

    out = tmp_path / "cache"
    shutil.copytree(pq_cache.directory, out)
    ids, mask = windows(1200)
    grown = build(graph_set, ids, mask, out, dtype="pq", append=True)
    assert grown.windows == 1200 and grown.info["codec"]["settings"]["m"] == 8
    with pytest.raises(PassageCacheError, match="a codec metric is read only to learn a codebook"):
        build(graph_set, ids, mask, out, dtype="pq", append=True, metric=np.eye(32))


def test_a_damaged_codebook_is_refused_when_the_cache_is_opened(pq_cache, tmp_path):
    import shutil

    out = tmp_path / "cache"
    shutil.copytree(pq_cache.directory, out)
    centroids = out / "codebook" / "centroids.npy"
    data = bytearray(centroids.read_bytes())
    data[-1] ^= 0x01  # one bit of one centroid
    centroids.write_bytes(bytes(data))
    with pytest.raises(PassageCacheError, match="codebook file codebook/centroids.npy is damaged") as error:
        load_passage_cache(out)
    assert "build it again" in error.value.hint
    centroids.unlink()
    with pytest.raises(PassageCacheError, match="centroids.npy is damaged or missing"):
        load_passage_cache(out)


def test_too_small_a_sample_is_refused_and_nothing_is_written(graph_set, tmp_path):
    ids, mask = windows(1000)
    with pytest.raises(CodecError, match="needs at least 9,984 token states"):
        build(graph_set, ids, mask, tmp_path / "cache", dtype="pq", codec_settings={"m": 8}, train_windows=100)
    assert not (tmp_path / "cache").exists()
    (tmp_path / "empty").mkdir()  # a folder given empty stays empty
    with pytest.raises(CodecError):
        build(graph_set, ids, mask, tmp_path / "empty", dtype="pq", codec_settings={"m": 8}, train_windows=100)
    assert listing(tmp_path / "empty") == []


def test_settings_that_do_not_fit_are_refused_before_anything_is_written(graph_set, tmp_path):
    ids, mask = windows(10)
    for dtype, settings, match in (("pq", {"m": 7}, "equal sub-vectors"), ("rq", {"bits": 3}, "1, 2 or 4 bits"),
                                   ("pq", {"k": 1}, "no setting k"), ("int8", {"m": 8}, "belong to a learned")):
        with pytest.raises(PassageCacheError, match=match):
            build(graph_set, ids, mask, tmp_path / "cache", dtype=dtype, codec_settings=settings)
        assert not (tmp_path / "cache").exists()
    # a metric: checked with the settings, before the plan (pq fisher without one was refused only once its
    # sample's states were computed; one given to int8 or rq was ignored)
    for dtype, settings, metric, match in (("pq", {"m": 8, "transform": "fisher"}, None, "learns from the upper"),
                                           ("pq", {"m": 8, "transform": "fisher"}, np.zeros((32, 32)), "positive"),
                                           ("rq", {"centroids": 16}, np.eye(32), "learns without a metric"),
                                           ("int8", None, np.eye(32), "a codec metric belongs to a learned codec")):
        with pytest.raises(PassageCacheError, match=match):
            build(graph_set, ids, mask, tmp_path / "cache", dtype=dtype, codec_settings=settings, metric=metric)
        assert not (tmp_path / "cache").exists()


def test_without_faiss_a_build_is_refused_naming_the_extra_and_a_cache_is_still_read(pq_cache, graph_set, tmp_path,
                                                                                     monkeypatch):
    ids, mask = windows(1000)
    rows = pq_cache.rows(ids[:3], mask[:3])
    expected = pq_cache.passage_hidden(rows)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(CodecError, match="faiss, which is not installed") as error:
        build(graph_set, ids, mask, tmp_path / "cache", dtype="rq")
    assert error.value.hint == FAISS_EXTRA and not (tmp_path / "cache").exists()
    reopened = load_passage_cache(pq_cache.directory)  # decoding is numpy only
    np.testing.assert_array_equal(reopened.passage_hidden(rows), expected)


def test_a_learned_codec_needs_masks_that_are_a_length(graph_set, tmp_path):
    ids, mask = windows(1000)
    mask[3, 0] = 0  # a hole before the window's last token
    with pytest.raises(PassageCacheError, match="not its leading tokens"):
        build(graph_set, ids, mask, tmp_path / "cache", dtype="binary")


def test_a_pq_cache_with_a_transform_gives_its_look_ups_for_upper_s_graph(graph_set, float32_cache, pq_cache,
                                                                          tmp_path):
    """passage_coefficients: the look-ups of the decode, whose product (graph_product) gives passage_hidden's
    states at every valid token; the padding zero. A cache without a product to leave refuses."""
    ids, mask = windows(1000)
    cache = build(graph_set, ids, mask, tmp_path / "pca", dtype="pq", codec_settings={"m": 8, "transform": "pca"})
    rows = cache.rows(ids[:5], mask[:5])
    coefficients = cache.passage_coefficients(rows)
    decoder, mean = cache.graph_product
    assert coefficients.shape == (5, LENGTH, decoder.shape[0]) and coefficients.dtype == np.float32
    valid = mask[:5].astype(bool)
    np.testing.assert_allclose(coefficients[valid] @ decoder + mean, cache.passage_hidden(rows)[valid], atol=1e-5)
    assert not coefficients[~valid].any()
    for other in (pq_cache, float32_cache):  # plain pq's coefficients are its states; float32 has no codes
        assert other.graph_product is None
        with pytest.raises(PassageCacheError, match="without a product to leave to a graph"):
            other.passage_coefficients(rows[:1])


def test_passage_coefficients_looks_up_only_the_positions_asked_for(graph_set, tmp_path):
    """A server at real lengths asks for its batch's widest window only: passage_coefficients(rows, positions) is the
    whole windows' look-ups cut there (a window longer than `positions` cut, one shorter zero past its length),
    from one segment or several; a width outside 1..Lp is refused."""
    ids, mask = windows(1200)
    build(graph_set, ids[:1000], mask[:1000], tmp_path / "pca", dtype="pq", codec_settings={"m": 8, "transform": "pca"})
    cache = build(graph_set, ids[1000:], mask[1000:], tmp_path / "pca", append=True)  # a second segment
    assert len(cache.segments) == 2
    picked = [0, 999, 1000, 5, 1100, 3]  # rows of both segments, in no order
    ids, mask = ids[picked], mask[picked]
    rows = cache.rows(ids, mask)
    whole = cache.passage_coefficients(rows)
    lengths = mask.sum(axis=1)
    for positions in (1, int(lengths.min()), int(lengths.max()), LENGTH - 1, LENGTH, np.int64(LENGTH)):
        cut = cache.passage_coefficients(rows, positions)
        assert cut.shape == (6, positions, whole.shape[2]) and cut.flags.c_contiguous
        np.testing.assert_array_equal(cut, whole[:, :positions])
        one = cache.passage_coefficients(rows[2:3], positions)  # a served question's single window
        np.testing.assert_array_equal(one, whole[2:3, :positions])
    for positions in (0, LENGTH + 1, -3, 2.5, True, "8"):
        with pytest.raises(PassageCacheError, match="positions must be a whole number from 1 to"):
            cache.passage_coefficients(rows, positions)


@pytest.mark.parametrize("dtype, settings, _", CODECS)
def test_passage_hidden_decodes_only_the_positions_asked_for(graph_set, tmp_path, dtype, settings, _):
    """passage_hidden(rows, positions) of a codec's cache decodes each window's first `positions` only: the whole
    windows' decode cut there (a window longer cut, one shorter zero past its length)."""
    ids, mask = windows(1000)
    cache = build(graph_set, ids, mask, tmp_path / dtype, dtype=dtype, codec_settings=settings)
    picked = [0, 999, 5, 500, 3]
    rows = cache.rows(ids[picked], mask[picked])
    whole = cache.passage_hidden(rows)
    lengths = mask[picked].sum(axis=1)
    for positions in (1, int(lengths.min()), int(lengths.max()), LENGTH):
        cut = cache.passage_hidden(rows, positions)
        assert cut.shape == (5, positions, whole.shape[2]) and cut.flags.c_contiguous
        np.testing.assert_allclose(cut, whole[:, :positions], rtol=0, atol=1e-6)
