"""Decoding a learned codec's passage codes back to float32 states (numpy only): what a reader of a pq, rq or binary
passage cache runs in the query path, here so that the measured machine runs the same code (the benchmark's
`online_served_codec` path decodes in every call). Training and encoding need faiss and stay in
passage_cache/quantizers/, whose codecs decode with these decoders; a codec's codebook is plain arrays and its
settings JSON scalars, so a runner gets both in a file and a job.

    pq      a table look-up per code byte (the sub-vectors' coefficients, concatenated), then, for its transforms,
            one product back to the states' coordinates (coefficients @ decoder + mean): in the query path, a server
            leaves that product to upper's graph (exporters/codec_upper.py) and runs the look-ups alone
    rq      the residual bytes' table look-ups plus the coarse centroid of the token
    binary  the sign bits' table look-ups (each dimension's two levels) times the token's scales, plus the mean
"""

import contextlib
import os

import numpy as np

from .helper_thread import helper_thread

try:  # holds numpy's BLAS to one thread while a codec decodes (see one_blas_thread)
    from threadpoolctl import ThreadpoolController
except ImportError:  # a measured machine with numpy and onnxruntime only: BLAS keeps its threads
    ThreadpoolController = None

_BLAS_CONTROLLER = None  # threadpoolctl's view of the BLAS libraries loaded, found once (it scans the process)


def blas_threads_limited() -> bool:
    """Whether one_blas_thread can hold numpy's BLAS to one thread here (threadpoolctl installed)."""
    return ThreadpoolController is not None


def one_blas_thread():
    """A context in which numpy's BLAS (and faiss's) runs on one thread: a codec's products (pq's transform, about
    [tokens, K] x [K, H]) run between onnxruntime's graph runs, and OpenBLAS's threads spin for a while after a
    product, taking the cores from the graph that follows. Served from a pq m=92 fisher cache at batch 1, a
    question's mean latency rose 9% over the float32 cache's with one BLAS thread and 53% with numpy's default
    two (results/passage-cache/codecs, "In the served path"). Without threadpoolctl, a context that changes
    nothing."""
    global _BLAS_CONTROLLER
    if ThreadpoolController is None:
        return contextlib.nullcontext()
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


# A product of at least this many rows is split over two threads. Not tuned: a [rows, 384] x [384, 384] product costs
# ~3 us a row on one core, and in a served question's decode (cold caches) the split of windows of 142 rows on
# average saved ~80 us of ~420, not half: the hand-over costs tens of microseconds (results/passage-cache/codecs,
# "After two fixes"). Below ~50 rows it can only cost.
SPLIT_PRODUCT_MIN_ROWS = 48
PRODUCT_HELPER = "codec-decode"  # the helper thread (runtime.helper_thread) that takes half of a large product


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def decode_product(coefficients: np.ndarray, decoder: np.ndarray) -> np.ndarray:
    """coefficients [T, K] @ decoder [K, H], float32 [T, H]. A query's decode runs between onnxruntime's graph runs,
    when the cores wait for it, but numpy's BLAS is held to one thread there (one_blas_thread: OpenBLAS's own
    threads spin after a product and take the cores from the graph that follows). So a product of many rows is
    split in two halves instead, one on this thread and one on a helper thread that sleeps between calls, each
    half a one-thread BLAS call. Only where BLAS is held to one thread (else its threads would run under ours) and
    the process may use two cores or more. (The scenario benchmark's server runs a numpy decode, rq, binary, pq
    without its product in upper, on its read-ahead thread beside lower_question: sessions.online_read_ahead. The
    split was measured only between graph runs, not there.)"""
    rows = len(coefficients)
    out = np.empty((rows, decoder.shape[1]), dtype=np.result_type(coefficients, decoder))
    if rows < SPLIT_PRODUCT_MIN_ROWS or not blas_threads_limited() or _usable_cores() < 2:
        return np.matmul(coefficients, decoder, out=out)
    half = rows // 2
    pending = helper_thread(PRODUCT_HELPER).submit(np.matmul, coefficients[half:], decoder, out=out[half:])
    np.matmul(coefficients[:half], decoder, out=out[:half])
    pending.result()
    return out


def table_decode(tables: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[T, table_width * groups]: row t is tables[g, codes[t, g]] for each group g, concatenated (tables
    [groups, 256, width], codes [T, groups] uint8). One flat take: numpy's fastest gather."""
    groups, entries, width = tables.shape
    flat = codes.astype(np.intp) + np.arange(groups, dtype=np.intp) * entries
    return np.take(tables.reshape(groups * entries, width), flat, axis=0).reshape(len(codes), groups * width)


def bucket_tables(levels: np.ndarray, bits: int) -> np.ndarray:
    """Decode tables of `bits`-bit codes packed 8 / bits dimensions a byte (lowest bits first): [H * bits / 8,
    256, 8 / bits] float32, entry [j, byte] = the levels of the byte's dimensions (levels [H, 2 ** bits])."""
    per_byte = 8 // bits
    hidden = levels.shape[0]
    byte = np.arange(256)
    codes = (byte[:, None] >> (bits * np.arange(per_byte))[None, :]) & ((1 << bits) - 1)  # [256, per_byte]
    grouped = levels.reshape(hidden // per_byte, per_byte, 1 << bits)  # [bytes, per_byte, levels]
    return np.take_along_axis(grouped[:, None, :, :], codes[None, :, :, None], axis=3)[..., 0].astype(np.float32)


def code_runs(sizes) -> list:
    """[(size, count)]: consecutive pq sub-vectors of one size (each run learned as one faiss ProductQuantizer,
    decoded with one table)."""
    runs = []
    for size in sizes:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    return [tuple(run) for run in runs]


def product_tables(codebook: dict) -> list:
    """[(first code, first coefficient, tables [count, 256, size])] of a pq codebook, one per run of equal
    sub-vectors (views of its centroids)."""
    tables, offset, code, column = [], 0, 0, 0
    for size, count in code_runs(codebook["sizes"].tolist()):
        width = count * 256 * size
        tables.append((code, column, codebook["centroids"][offset:offset + width].reshape(count, 256, size)))
        offset, code, column = offset + width, code + count, column + size * count
    return tables


class ProductDecoder:
    """pq: the sub-vectors' coefficients looked up, then (transforms opq, pca, fisher) mapped back to the states'
    coordinates."""

    def __init__(self, settings: dict, codebook: dict):
        tables = product_tables(codebook)
        # as stored, not converted: a copy would also drop what a caller passed (a test's probe of the product)
        self.decoder, self.mean = codebook.get("decoder"), codebook.get("mean")
        # for the look-ups: each code column's first entry in its run's flat table [count * 256, size], and each
        # run's (first code, codes, flat table, first coefficient, coefficients)
        self.entry_offsets = np.concatenate([np.arange(len(table), dtype=np.intp) * table.shape[1]
                                             for _, _, table in tables])
        self.runs = [(code, len(table), table.reshape(-1, table.shape[2]), column, len(table) * table.shape[2])
                     for code, column, table in tables]
        self.width = sum(run[4] for run in self.runs)

    @property
    def graph_product(self) -> tuple:
        """(decoder [K, H], mean [H] or None): the product a graph can compute in place of decode()'s (see
        exporters/codec_upper.py), coefficients() giving its input; None where the codec has no transform (its
        coefficients are the states)."""
        return None if self.decoder is None else (self.decoder, self.mean)

    def coefficients(self, codes: dict) -> np.ndarray:
        """[T, K] float32: the look-ups alone, each token's sub-vectors' coefficients concatenated (one flat take
        per run of equal sub-vectors, as table_decode, its entries' offsets computed once for all runs)."""
        entries = codes["codes"] + self.entry_offsets  # uint8 + intp: intp, one pass
        if len(self.runs) == 1:
            return np.take(self.runs[0][2], entries, axis=0).reshape(len(entries), self.width)
        out = np.empty((len(entries), self.width), dtype=np.float32)
        for code, count, flat, column, width in self.runs:
            out[:, column:column + width] = np.take(flat, entries[:, code:code + count], axis=0).reshape(-1, width)
        return out

    def decode(self, codes: dict) -> np.ndarray:
        coefficients = self.coefficients(codes)
        if self.decoder is None:
            return coefficients
        tokens = decode_product(coefficients, self.decoder)
        if self.mean is not None:
            tokens += self.mean
        return tokens


class ResidualDecoder:
    """rq: the token's coarse centroid plus its residual, each dimension's `bits` decoded to its bucket's mean."""

    def __init__(self, settings: dict, codebook: dict):
        self.tables = bucket_tables(codebook["levels"], settings["bits"])
        self.centroids = codebook["centroids"]

    def decode(self, codes: dict) -> np.ndarray:
        tokens = table_decode(self.tables, codes["residual"])
        tokens += np.take(self.centroids, codes["centroid"].astype(np.intp), axis=0)
        return tokens


class BinaryDecoder:
    """binary: each dimension's level for its sign bit, times the token's scale of its group, plus the mean."""

    def __init__(self, settings: dict, codebook: dict):
        self.tables = bucket_tables(codebook["levels"], 1)
        self.mean = codebook["mean"]

    def decode(self, codes: dict) -> np.ndarray:
        tokens = table_decode(self.tables, codes["signs"])
        scales = codes["scale"].astype(np.float32)
        tokens = (tokens.reshape(len(tokens), scales.shape[1], -1) * scales[:, :, None]).reshape(tokens.shape)
        tokens += self.mean
        return tokens


DECODERS = {"pq": ProductDecoder, "rq": ResidualDecoder, "binary": BinaryDecoder}


def make_decoder(name: str, settings: dict, codebook: dict):
    """The decoder of codec `name` (its settings and codebook as a cache stores them): decode({array: [T, ...]})
    gives the tokens' float32 states [T, H]."""
    if name not in DECODERS:
        raise ValueError(f"unknown codec {name!r} (known: {', '.join(DECODERS)})")
    return DECODERS[name](settings, codebook)


def graph_product(decoder):
    """A decoder's product that a graph can take over (ProductDecoder.graph_product), else None (rq, binary)."""
    return getattr(decoder, "graph_product", None)


def coefficient_windows(decoder, codes: dict) -> np.ndarray:
    """float32 [n, Lp, K] of windows' pq codes {"codes": [n, Lp, m]}: the look-ups alone, every position (the
    product is left to upper's graph: exporters/codec_upper.py)."""
    n, length = codes["codes"].shape[:2]
    return decoder.coefficients({"codes": codes["codes"].reshape(n * length, -1)}).reshape(n, length, -1)


def decode_windows(decoder, codes: dict) -> np.ndarray:
    """float32 [n, Lp, H] of windows' codes {array: [n, Lp, ...]}, every position decoded (padding included: a
    caller that knows the windows' lengths decodes less, as passage_cache's Codec.decode does), numpy's BLAS on
    one thread."""
    n, length = next(iter(codes.values())).shape[:2]
    with one_blas_thread():
        tokens = decoder.decode({name: value.reshape((n * length,) + value.shape[2:]) for name, value in codes.items()})
    return tokens.reshape(n, length, -1)
