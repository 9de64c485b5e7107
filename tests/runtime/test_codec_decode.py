"""The learned codecs' numpy decode, as the cache reader and the benchmark's runner both run it: the same states as
each codec's decode, pq's fisher transform as its formula (table look-ups, then coefficients @ decoder + mean), and
numpy's BLAS held to one thread."""

import numpy as np
import pytest

from deformer_bench.runtime import codec_decode, helper_thread
from deformer_bench.runtime.codec_decode import decode_windows, make_decoder, product_tables

HIDDEN = 32


@pytest.fixture(scope="module")
def sample():
    pytest.importorskip("faiss")  # training needs it (the test extra installs it); decoding does not
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((8, HIDDEN))
    return (rng.standard_normal((12000, 8)) @ basis + 0.1 * rng.standard_normal((12000, HIDDEN))).astype(np.float32)


@pytest.fixture(scope="module")
def windows(sample):
    return sample[:3 * 20].reshape(3, 20, HIDDEN) * 1.01


def metric():
    rng = np.random.default_rng(1)
    root = rng.standard_normal((HIDDEN, HIDDEN))
    return root @ root.T


def trained(name, settings, sample):
    from deformer_bench.passage_cache.quantizers import make_codec

    codec = make_codec(name, HIDDEN, **settings)
    codec.train(sample, metric=metric() if settings.get("transform") == "fisher" else None)
    return codec


CODECS = [("pq", {"m": 8}), ("pq", {"m": 12, "transform": "pca"}),
          ("pq", {"m": 12, "transform": "fisher"}), ("rq", {"centroids": 16, "bits": 2}),
          ("binary", {"group": 8})]


@pytest.mark.parametrize("name, settings", CODECS)
def test_a_runner_decodes_whole_windows_as_the_cache_reader_does(sample, windows, name, settings):
    """What online_served_codec decodes (decode_windows over the codec as a cache stores it: its name, settings and
    codebook) equals what the cache reader's Codec.decode gives, every position."""
    codec = trained(name, settings, sample)
    codes = codec.encode(windows)
    decoder = make_decoder(codec.name, codec.settings, codec.codebook)
    decoded = decode_windows(decoder, codes)
    assert decoded.shape == windows.shape and decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, codec.decode(codes), rtol=0, atol=1e-5)
    error = ((decoded - windows) ** 2).sum() / ((windows - windows.mean(axis=(0, 1))) ** 2).sum()
    assert error < 0.6  # a decode, not noise (binary, the coarsest, measured ~0.3)


def reference_pq_decode(codebook: dict, codes: np.ndarray) -> np.ndarray:
    """pq's decode as written before it was tuned: each code's coefficients looked up and concatenated, then
    coefficients @ decoder + mean."""
    parts = []
    for first, _, tables in product_tables(codebook):
        for group in range(len(tables)):
            parts.append(tables[group][codes[:, first + group].astype(np.intp)])
    coefficients = np.concatenate(parts, axis=1).astype(np.float64)
    return coefficients @ codebook["decoder"].astype(np.float64) + codebook["mean"].astype(np.float64)


def test_pq_fisher_decodes_to_its_formula(sample, windows):
    codec = trained("pq", {"m": 12, "transform": "fisher"}, sample)
    codes = codec.encode(windows)["codes"].reshape(-1, 12)
    decoded = make_decoder("pq", codec.settings, codec.codebook).decode({"codes": codes})
    assert decoded.dtype == np.float32 and decoded.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(decoded, reference_pq_decode(codec.codebook, codes), rtol=1e-5, atol=1e-5)


def test_pq_decodes_a_valid_prefix_of_rows_alone(sample, windows):
    """A window's valid tokens are decoded alone (the cache reader passes only those rows): the same rows."""
    codec = trained("pq", {"m": 12, "transform": "fisher"}, sample)
    codes = codec.encode(windows)["codes"].reshape(-1, 12)
    decoder = make_decoder("pq", codec.settings, codec.codebook)
    whole = decoder.decode({"codes": codes})
    np.testing.assert_array_equal(decoder.decode({"codes": codes[:7]}), whole[:7])
    assert decoder.decode({"codes": codes[:0]}).shape == (0, HIDDEN)


class BlasThreadsProbe(np.ndarray):
    """A decoder matrix that records how many threads numpy's BLAS may use when a product reaches it (numpy's own
    library only: faiss brings another OpenBLAS, which a decode never calls, and which one_blas_thread's controller,
    made once, does not see if faiss was imported after it: the test failed run after test_cached_states alone)."""

    seen = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from threadpoolctl import threadpool_info

        BlasThreadsProbe.seen.append(max(info["num_threads"] for info in threadpool_info()
                                         if info["user_api"] == "blas" and "numpy" in info["filepath"]))
        return getattr(ufunc, method)(*(np.asarray(value) for value in inputs), **kwargs)


def test_a_runner_decodes_on_one_blas_thread(sample, windows):
    """The runner's decode, like the cache reader's, holds numpy's BLAS to one thread (its spinning threads took
    the cores from the next onnxruntime graph: +53% a served question, against +9% on one), and gives the process's
    setting back."""
    from threadpoolctl import threadpool_info, threadpool_limits

    codec = trained("pq", {"m": 12, "transform": "pca"}, sample)
    codes = codec.encode(windows)
    codebook = {**codec.codebook, "decoder": codec.codebook["decoder"].view(BlasThreadsProbe)}
    BlasThreadsProbe.seen = []
    with threadpool_limits(limits=2, user_api="blas"):
        decode_windows(make_decoder("pq", codec.settings, codebook), codes)
        after = [info["num_threads"] for info in threadpool_info()
                 if info["user_api"] == "blas" and "numpy" in info["filepath"]]
    assert BlasThreadsProbe.seen and set(BlasThreadsProbe.seen) == {1}  # (a long product: each half on one)
    assert after and all(threads == 2 for threads in after)
    assert codec_decode.blas_threads_limited()


def test_without_threadpoolctl_the_decode_runs_and_says_it_could_not_limit(monkeypatch):
    """A measured machine may have numpy and onnxruntime only: decoding still works there."""
    monkeypatch.setattr(codec_decode, "ThreadpoolController", None)
    tables = np.arange(2 * 256 * 3, dtype=np.float32).reshape(2 * 256 * 3)
    codebook = {"centroids": tables, "sizes": np.array([3, 3], dtype=np.int32)}
    codes = {"codes": np.array([[[1, 2], [255, 0]]], dtype=np.uint8)}  # one window of two tokens
    decoded = decode_windows(make_decoder("pq", {"m": 2}, codebook), codes)
    expected = tables.reshape(2, 256, 3)
    np.testing.assert_array_equal(decoded[0, 0], np.concatenate([expected[0, 1], expected[1, 2]]))
    np.testing.assert_array_equal(decoded[0, 1], np.concatenate([expected[0, 255], expected[1, 0]]))
    assert not codec_decode.blas_threads_limited()


class ThreadsProbe(np.ndarray):
    """A decoder matrix that records the thread each product reaching it runs on."""

    seen = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        import threading

        ThreadsProbe.seen.append(threading.current_thread().name)
        return getattr(ufunc, method)(*(np.asarray(value) for value in inputs), **kwargs)


def probed_product(rows: int, monkeypatch, cores: int = 2):
    monkeypatch.setattr(codec_decode, "_usable_cores", lambda: cores)
    rng = np.random.default_rng(0)
    coefficients = rng.standard_normal((rows, 24)).astype(np.float32)
    decoder = rng.standard_normal((24, HIDDEN)).astype(np.float32)
    ThreadsProbe.seen = []
    with codec_decode.one_blas_thread():
        product = codec_decode.decode_product(coefficients, decoder.view(ThreadsProbe))
    np.testing.assert_allclose(product, coefficients @ decoder, rtol=1e-5, atol=1e-5)
    assert type(product) is np.ndarray and product.dtype == np.float32 and product.shape == (rows, HIDDEN)
    return sorted(name.split("_")[0] for name in ThreadsProbe.seen)


def test_a_long_product_is_split_over_this_thread_and_a_helper(monkeypatch):
    """pq's product back to the states' coordinates (~70% of a fisher decode) runs while onnxruntime waits:
    from SPLIT_PRODUCT_MIN_ROWS rows, half of it runs on a helper thread (BLAS held to one thread in each), the
    same product."""
    rows = codec_decode.SPLIT_PRODUCT_MIN_ROWS
    assert probed_product(rows + 1, monkeypatch) == ["MainThread", "codec-decode"]
    assert probed_product(rows - 1, monkeypatch) == ["MainThread"]  # too short to be worth the hand-over
    assert probed_product(3 * rows, monkeypatch, cores=1) == ["MainThread"]  # a process held to one core
    monkeypatch.setattr(codec_decode, "ThreadpoolController", None)  # BLAS not held: its own threads, not ours
    assert probed_product(3 * rows, monkeypatch) == ["MainThread"]


def test_a_forked_child_gets_a_helper_thread_of_its_own(monkeypatch):
    """A fork copies the helper's executor but not its thread: work handed to the copy would wait forever."""
    first = helper_thread.helper_thread(codec_decode.PRODUCT_HELPER)
    monkeypatch.setattr(helper_thread.os, "getpid", lambda: -1)  # as seen from a child
    assert helper_thread.helper_thread(codec_decode.PRODUCT_HELPER) is not first
    assert probed_product(2 * codec_decode.SPLIT_PRODUCT_MIN_ROWS, monkeypatch) == ["MainThread", "codec-decode"]


def test_an_unknown_codec_is_refused():
    with pytest.raises(ValueError, match="unknown codec 'lz4'"):
        make_decoder("lz4", {}, {})
