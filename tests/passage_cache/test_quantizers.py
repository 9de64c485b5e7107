"""Learned passage-state codecs (quantizers/): round-trip error bounds on random states, the codebook as plain
arrays, bytes a token, and the refusals (no faiss, a sample too small, settings that do not fit)."""

import sys

import numpy as np
import pytest

from deformer_bench.passage_cache.quantizers import (CODECS, FAISS_EXTRA, CodecError, make_codec,
                                                     MIN_POINTS_PER_CENTROID)
from tests.runtime.test_codec_decode import BlasThreadsProbe  # the decode's own probe, one copy

faiss = pytest.importorskip("faiss")  # the test extra installs it; the refusal below runs without it too

HIDDEN, LENGTH = 64, 24


def correlated_states(count: int, seed: int = 0) -> np.ndarray:
    """[count, HIDDEN] float32 draws (`seed`) of one distribution with unequal variances, correlations and a mean:
    what layer-k states look like to a codec (not isotropic noise, which no transform can help)."""
    shape = np.random.default_rng(1234)
    mixing = shape.standard_normal((HIDDEN, HIDDEN)) * np.geomspace(2.0, 0.05, HIDDEN)[:, None]
    mean = shape.standard_normal(HIDDEN)
    return (np.random.default_rng(seed).standard_normal((count, HIDDEN)) @ mixing + mean).astype(np.float32)


@pytest.fixture(scope="module")
def sample():
    return correlated_states(12_000)


@pytest.fixture(scope="module")
def windows():
    return correlated_states(6 * LENGTH, seed=1).reshape(6, LENGTH, HIDDEN)


def relative_error(decoded: np.ndarray, states: np.ndarray) -> float:
    centered = states - states.reshape(-1, HIDDEN).mean(axis=0)
    return float(((decoded - states) ** 2).sum() / (centered ** 2).sum())


def round_trip(codec, sample, windows, **train):
    codec.train(sample, **train)
    codes = codec.encode(windows)
    decoded = codec.decode(codes)
    assert decoded.dtype == np.float32 and decoded.shape == windows.shape
    for array in codes.values():
        assert array.shape[:2] == windows.shape[:2]  # row-aligned with the windows, like a segment's arrays
    return codes, decoded


# (codec, settings, the relative squared error it must stay under on these states: ~1.5-2x what it measured)
BOUNDS = [
    ("pq", {"m": 32}, 0.02),  # measured 0.009
    ("pq", {"m": 16}, 0.15),  # 0.088
    ("pq", {"m": 16, "transform": "pca"}, 0.03),  # 0.015: the transform's gain on correlated states
    ("pq", {"m": 12, "transform": "pca"}, 0.05),  # 0.025; 12 does not divide 64: unequal sub-vectors
    ("rq", {"centroids": 64, "bits": 4}, 0.03),  # 0.014
    ("rq", {"centroids": 64, "bits": 2}, 0.15),  # 0.084
    ("rq", {"centroids": 64, "bits": 1}, 0.35),  # 0.22
    ("binary", {"group": 64}, 0.45),  # 0.34
    ("binary", {"group": 16}, 0.45),  # 0.33
]


@pytest.mark.parametrize("name,settings,bound", BOUNDS, ids=[f"{n}-{s}" for n, s, _ in BOUNDS])
def test_round_trip_error_is_bounded(name, settings, bound, sample, windows):
    codec = make_codec(name, HIDDEN, **settings)
    codes, decoded = round_trip(codec, sample, windows)
    assert relative_error(decoded, windows) < bound
    stored = sum(array[0, 0].nbytes for array in codes.values())
    assert stored == codec.code_bytes_per_token()  # what encode stores is what bytes_per_token counts


def test_more_bits_less_error(sample, windows):
    errors = [relative_error(round_trip(make_codec("rq", HIDDEN, centroids=64, bits=bits), sample, windows)[1],
                             windows) for bits in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]


def test_binary_refit_levels_beat_plus_minus_one(sample, windows):
    plain = round_trip(make_codec("binary", HIDDEN, group=64, refit=False), sample, windows)[1]
    refit = round_trip(make_codec("binary", HIDDEN, group=64, refit=True), sample, windows)[1]
    assert relative_error(refit, windows) < relative_error(plain, windows)


def test_fisher_transform_spends_bytes_where_the_metric_weighs(sample, windows):
    """With a metric that weighs the first 8 dimensions 100x, the fisher transform's error in that metric is
    below the pca transform's (which weighs every dimension alike)."""
    weights = np.ones(HIDDEN)
    weights[:8] = 100.0
    metric = np.diag(weights)

    def metric_error(decoded):
        error = (decoded - windows).reshape(-1, HIDDEN)
        return float(((error ** 2) * weights).sum())

    pca = round_trip(make_codec("pq", HIDDEN, m=8, transform="pca"), sample, windows)[1]
    fisher = round_trip(make_codec("pq", HIDDEN, m=8, transform="fisher", alpha=0.05), sample, windows,
                        metric=metric)[1]
    assert metric_error(fisher) < 0.7 * metric_error(pca)


def test_padding_past_the_lengths_is_neither_encoded_nor_decoded(sample, windows):
    """With lengths, a window's padding codes are zeros and decode to zeros; its valid tokens decode as
    without lengths (the codes of a token do not depend on its window's other tokens)."""
    codec = make_codec("pq", HIDDEN, m=12, transform="pca")
    codec.train(sample)
    lengths = np.array([LENGTH, 0, 1, 5, LENGTH - 1, 17])
    codes = codec.encode(windows, lengths)
    decoded = codec.decode(codes, lengths)
    whole = codec.decode(codec.encode(windows))
    for window, length in enumerate(lengths):
        assert not codes["codes"][window, length:].any()
        assert not decoded[window, length:].any()
        np.testing.assert_allclose(decoded[window, :length], whole[window, :length], rtol=1e-5, atol=1e-5)
    with pytest.raises(CodecError, match="lengths"):
        codec.decode(codes, lengths + 1)


@pytest.mark.parametrize("name,settings", [("pq", {"m": 12, "transform": "pca"}), ("rq", {"centroids": 32}),
                                           ("binary", {"group": 16})])
def test_codebook_is_plain_arrays_that_round_trip_through_npy(name, settings, sample, windows, tmp_path):
    codec = make_codec(name, HIDDEN, **settings)
    codes, decoded = round_trip(codec, sample, windows)
    for key, array in codec.codebook.items():
        assert isinstance(array, np.ndarray) and array.dtype != object
        np.save(tmp_path / f"{key}.npy", array, allow_pickle=False)
    loaded = {key: np.load(tmp_path / f"{key}.npy", allow_pickle=False) for key in codec.codebook}
    again = make_codec(name, HIDDEN, loaded, **settings)
    np.testing.assert_array_equal(again.decode(codes), decoded)
    assert again.codebook_bytes() == codec.codebook_bytes()


def test_bytes_per_token_all_included():
    codec = make_codec("pq", 384, m=92, transform="pca")
    # 92 code bytes, a uint16 id, a 16-byte key and a uint16 length spread over 224 tokens
    assert codec.bytes_per_token(224) == pytest.approx(92 + 2 + 18 / 224)
    assert make_codec("binary", 384, group=384).code_bytes_per_token() == 48 + 2  # float16 scale
    assert make_codec("rq", 384, bits=2).code_bytes_per_token() == 2 + 96  # uint16 centroid id


def test_decode_needs_no_faiss(sample, windows, monkeypatch):
    codec = make_codec("pq", HIDDEN, m=16)
    codes, decoded = round_trip(codec, sample, windows)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    np.testing.assert_array_equal(codec.decode(codes), decoded)


# ---- refusals -------------------------------------------------------------------------------------------

FITTING = {"pq": {"m": 16}, "rq": {"centroids": 16}, "binary": {}}


def test_every_codec_is_tested_without_faiss():
    assert set(FITTING) == set(CODECS)


@pytest.mark.parametrize("name", sorted(FITTING))
def test_training_without_faiss_names_the_extra(name, sample, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(CodecError) as raised:
        make_codec(name, HIDDEN, **FITTING[name]).train(sample)
    assert FAISS_EXTRA in raised.value.hint


def test_encoding_without_faiss_names_the_extra(sample, windows, monkeypatch):
    codec = make_codec("rq", HIDDEN, centroids=16)
    codec.train(sample)
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(CodecError) as raised:
        codec.encode(windows)
    assert FAISS_EXTRA in raised.value.hint


@pytest.mark.parametrize("name,settings,centroids", [("pq", {"m": 16}, 256), ("rq", {"centroids": 128}, 128)])
def test_too_small_a_sample_is_refused(name, settings, centroids, sample):
    codec = make_codec(name, HIDDEN, **settings)
    enough = centroids * MIN_POINTS_PER_CENTROID
    with pytest.raises(CodecError, match=f"at least {enough:,}"):
        codec.train(sample[:enough - 1])
    codec.train(sample[:enough])  # the minimum itself is enough


@pytest.mark.parametrize("name,settings,match", [
    ("pq", {"m": 10}, "equal sub-vectors"),
    ("pq", {"m": 16, "transform": "rotate"}, "unknown"),
    ("pq", {"m": 65, "transform": "pca"}, "between 1 and 64"),
    ("rq", {"bits": 3}, "1, 2 or 4"),
    ("rq", {"centroids": 70_000}, "uint16"),
    ("binary", {"group": 24}, "equal groups"),
    ("binary", {"scale": 2}, "no setting scale"),
    ("lsq", {}, "unknown codec"),
    # a hostile user's settings (issue 25's check): `true` parses as a bool, which Python counts as the int 1;
    # text where a number or a bool goes (alpha=abc raised a bare ValueError)
    ("pq", {"m": True}, "between 1 and 64"),
    ("pq", {"m": 16, "transform": "pca", "alpha": "abc"}, "alpha=abc"),
    ("pq", {"m": 16, "transform": "pca", "alpha": True}, "alpha=True"),
    ("pq", {"m": 16, "transform": "pca", "alpha": "nan"}, "alpha=nan"),
    ("rq", {"bits": True}, "1, 2 or 4"),
    ("rq", {"centroids": True}, "uint16"),
    ("binary", {"group": True}, "equal groups"),
    ("binary", {"refit": "maybe"}, "true or false"),
    ("binary", {"refit": 1}, "true or false"),
])
def test_settings_that_do_not_fit_are_refused(name, settings, match):
    with pytest.raises(CodecError, match=match):
        make_codec(name, HIDDEN, **settings)


def test_a_codec_and_a_caches_record_of_it_are_described_alike():
    """One description for both: a codec's messages (Codec.describe) and an append's refusal, which names the codec
    a cache's record stores (build_codec.check_same_codec) from its name and settings alone."""
    from deformer_bench.passage_cache.quantizers import describe_codec

    codec = make_codec("pq", HIDDEN, m=8)
    assert codec.describe() == "pq m=8 transform=none alpha=0.1" == describe_codec(codec.name, codec.settings)
    assert describe_codec("rq", {"centroids": 16, "bits": 2}) == "rq centroids=16 bits=2"


def test_a_setting_given_twice_is_refused():
    from deformer_bench.passage_cache.quantizers import parse_settings

    assert parse_settings(" m = 8 ,transform=pca") == {"m": 8, "transform": "pca"}
    with pytest.raises(CodecError, match="codec setting m is given twice"):
        parse_settings("m=8,transform=pca,m=16")


@pytest.mark.parametrize("metric, match", [
    (np.zeros((HIDDEN, HIDDEN)), "positive trace"),  # trace 0: the blend divided by it, NaN into eigh
    (-np.eye(HIDDEN), "positive trace"),
    (np.full((HIDDEN, HIDDEN), np.nan), "finite"),
    (np.full((HIDDEN, HIDDEN), "abc"), "real numbers"),  # a bare ValueError from np.asarray(float64)
    (np.eye(HIDDEN, dtype=np.complex64), "real numbers"),
    (np.eye(HIDDEN, dtype=bool), "real numbers"),
    (np.eye(HIDDEN)[None], "got shape"),
])
def test_a_metric_that_is_no_fisher_information_is_refused(sample, metric, match):
    codec = make_codec("pq", HIDDEN, m=8, transform="fisher")
    with pytest.raises(CodecError, match=match):
        codec.check_metric(metric)
    with pytest.raises(CodecError, match=match):
        codec.train(sample, metric=metric)
    assert codec.check_metric(np.eye(HIDDEN, dtype=np.int64)).dtype == np.float64  # whole numbers are numbers


@pytest.mark.parametrize("name, settings", [("pq", {"m": 8}), ("pq", {"m": 8, "transform": "pca"}),
                                            ("rq", {"centroids": 16}), ("binary", {})])
def test_a_metric_given_to_a_codec_that_learns_without_one_is_refused(name, settings):
    codec = make_codec(name, HIDDEN, **settings)
    assert codec.check_metric(None) is None
    with pytest.raises(CodecError, match="learns without a metric"):
        codec.check_metric(np.eye(HIDDEN))


def test_fisher_transform_needs_a_metric(sample):
    with pytest.raises(CodecError, match="metric"):
        make_codec("pq", HIDDEN, m=8, transform="fisher").train(sample)
    with pytest.raises(CodecError, match="metric"):
        make_codec("pq", HIDDEN, m=8, transform="fisher").train(sample, metric=np.eye(HIDDEN + 1))


def test_states_of_another_shape_or_not_finite_are_refused(sample, windows):
    codec = make_codec("binary", HIDDEN)
    with pytest.raises(CodecError, match=r"\[N, 64\]"):
        codec.train(sample[:, :32])
    bad = sample.copy()
    bad[5, 3] = np.nan
    with pytest.raises(CodecError, match="not finite"):
        codec.train(bad)
    codec.train(sample)
    with pytest.raises(CodecError, match="windows"):
        codec.encode(windows[0])
    with pytest.raises(CodecError, match="has no codebook"):
        make_codec("binary", HIDDEN).decode(codec.encode(windows))


def test_one_dimensional_sub_vectors_are_coded_to_their_nearest_level(sample, windows):
    """The transform codes give the coefficients that matter most a byte each; those are coded by a sorted
    search, not faiss (15x slower there): every code must still be the nearest of its 256 levels."""
    codec = make_codec("pq", HIDDEN, m=40, transform="pca")
    codec.train(sample)
    assert codec.codebook["sizes"][0] == 1  # the leading coefficients have a byte each
    codes = codec.encode(windows)["codes"].reshape(-1, 40)
    coefficients = codec._coefficients(codec.codebook, windows.reshape(-1, HIDDEN))
    singles = int((codec.codebook["sizes"] == 1).sum())
    levels = codec.codebook["centroids"][:singles * 256].reshape(singles, 256)
    distance = np.abs(coefficients[:, :singles, None] - levels[None])  # [T, singles, 256]
    chosen = np.take_along_axis(distance, codes[:, :singles, None].astype(np.intp), axis=2)[..., 0]
    np.testing.assert_allclose(chosen, distance.min(axis=2), rtol=0, atol=1e-5)


def test_every_sub_vector_is_coded_to_its_nearest_centroid(sample, windows):
    """faiss codes the sub-vectors of two dimensions or more, its centroids also kept transposed (its faster
    search for sizes it has no kernel of its own for): each code is still the nearest of the 256, for every size
    of sub-vector the transform gives (up to float32 rounding of near ties)."""
    codec = make_codec("pq", HIDDEN, m=24, transform="pca")
    codec.train(sample)
    sizes = codec.codebook["sizes"].tolist()
    assert len(set(size for size in sizes if size > 1)) >= 3  # several sizes, each a faiss quantizer of its own
    codes = codec.encode(windows)["codes"].reshape(-1, 24)
    coefficients = codec._coefficients(codec.codebook, windows.reshape(-1, HIDDEN))
    offset, column = 0, 0
    for group, size in enumerate(sizes):
        centroids = codec.codebook["centroids"][offset:offset + 256 * size].reshape(256, size)
        block = coefficients[:, column:column + size]
        distance = ((block[:, None, :] - centroids[None]) ** 2).sum(axis=2)  # [T, 256]
        chosen = distance[np.arange(len(block)), codes[:, group]]
        np.testing.assert_allclose(chosen, distance.min(axis=1), rtol=1e-4, atol=1e-5)
        offset, column = offset + 256 * size, column + size


def test_decode_runs_blas_on_one_thread_and_encode_on_the_processs(sample, windows):
    """A decode's products run between onnxruntime's graph runs: with numpy's default BLAS threads (which spin
    after a product) a served question took 53% longer from a pq cache; with one, 9%. Held to one thread inside
    decode, whatever the process allows, and given back after. An encode runs in a build, after lower_passage
    over the whole shard: it keeps the process's threads (held to one, a build's encode took 2.2x as long)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    codec = make_codec("pq", HIDDEN, m=12, transform="pca")
    codec.train(sample)
    codes = codec.encode(windows)
    codec.codebook["decoder"] = codec.codebook["decoder"].view(BlasThreadsProbe)
    BlasThreadsProbe.seen = []
    with threadpool_limits(limits=2, user_api="blas"):
        codec.decode(codes)
        after = [info["num_threads"] for info in threadpool_info()
                 if info["user_api"] == "blas" and "numpy" in info["filepath"]]  # numpy's (see BlasThreadsProbe)
    assert BlasThreadsProbe.seen and set(BlasThreadsProbe.seen) == {1}  # (a long product: each half on one)
    assert after and all(threads == 2 for threads in after)  # the process's own setting, restored
    codec.codebook["encoder"] = codec.codebook["encoder"].view(BlasThreadsProbe)
    BlasThreadsProbe.seen = []
    with threadpool_limits(limits=2, user_api="blas"):
        codec.encode(windows)
    assert BlasThreadsProbe.seen == [2]
