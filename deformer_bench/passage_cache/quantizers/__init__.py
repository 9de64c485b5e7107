"""Learned codecs of passage states (issue 25): a few bytes a token instead of 4 a dimension.

Each codec learns a codebook from a sample of the graph set's own passage states ([N, H] float32, the valid
tokens of some windows), encodes windows [n, Lp, H] into small integer codes (and float16 scales where it has
them) and decodes them back to float32 [n, Lp, H], the only dtype the upper graph takes.

    pq      product quantization (faiss): the H dimensions cut into `m` sub-vectors, each stored as one byte,
            the id of its nearest of 256 sub-centroids; `opq` adds faiss's learned rotation before the cut
            (decode then costs one [Lp, H] x [H, H] product).
    rq      ColBERTv2's residual codes: the id of the token's nearest of `centroids` coarse centroids (uint16,
            faiss k-means) and its residual to it in `bits` (1, 2 or 4) bits a dimension, cut at the residual's
            quantiles per dimension and decoded to each bucket's mean.
    binary  one bit a dimension, the sign around the per-dimension mean, times a float16 scale per token and
            group of `group` dimensions (the mean |x - mean| of the group: the scale that minimizes the squared
            error of sign codes); the two levels of each dimension are refit on the sample (a per-dimension
            linear correction of the decoded value, least squares).

Training and encoding need faiss (the optional extra `pip install deformer-bench[codecs]`); decoding is numpy
only, so a reader of a cache never needs it. Every decode is table look-ups: a code byte selects a short
float32 vector from a table learned at training (tens of microseconds a 224-token window); pq's transforms add one
product back to the states' coordinates (~1 ms a window for fisher at m=92), run on one BLAS thread. A codec's whole
state is `codebook`, a dict of plain numpy arrays (saved as .npy files beside the segments, checksummed like them), and
`settings`, a dict of JSON scalars.

base.py    the Codec interface and what the codecs share (settings, faiss, one BLAS thread, decode tables)
pq.py, rq.py, binary.py  one codec each; CODECS and make_codec below name them
"""

from .base import (FAISS_EXTRA, KEY_BYTES_PER_WINDOW, LENGTH_BYTES_PER_WINDOW, MIN_POINTS_PER_CENTROID, Codec,
                   CodecError, describe_codec, one_blas_thread, parse_settings, require_faiss)
from .binary import BinaryCodes
from .pq import ProductQuantizer
from .rq import ResidualCodes

__all__ = ["CODECS", "FAISS_EXTRA", "KEY_BYTES_PER_WINDOW", "LENGTH_BYTES_PER_WINDOW", "MIN_POINTS_PER_CENTROID",
           "BinaryCodes", "Codec", "CodecError", "ProductQuantizer", "ResidualCodes", "describe_codec", "make_codec",
           "one_blas_thread", "parse_settings", "require_faiss"]


CODECS = {codec.name: codec for codec in (ProductQuantizer, ResidualCodes, BinaryCodes)}


def make_codec(name: str, hidden_size: int, codebook: dict = None, **settings) -> Codec:
    if name not in CODECS:
        raise CodecError(f"unknown codec {name!r}", f"choose one of {', '.join(CODECS)}")
    return CODECS[name](hidden_size, codebook, **settings)
