"""deformer-bench --served-cache: the online path served from a passage cache stored in a learned codec (pq, rq or
binary: deformer-cache build --dtype), its codes gathered from memory-mapped files and decoded in every call
(`online_served_codec`), timed beside `online_served` (the float32 states gathered the same way): what decoding costs
in the query path (issue 25). The runner decodes with numpy alone (runtime.codec_decode), but for pq with a transform
it runs the look-ups only and upper's graph the product (exporters/codec_upper.py), as a server does: faiss is not
needed to serve a cache, only to build one."""

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..bench.plan import ServedCodec
from ..contracts.errors import ConfigError, PassageCacheError
from ..contracts.graphs import GRAPHS
from ..exporters.codec_upper import check_loads, product_graph
from ..passage_cache.store import check_identity, load_passage_cache
from ..runtime.codec_decode import graph_product, make_decoder

# The cache's first windows staged on the target (of its first segment); a larger batch takes them again from the
# first: decoding costs the same whichever windows it decodes.
STAGED_WINDOWS = 64


def check_served_cache_request(request) -> None:
    """--served-cache with the graph set it serves, checked before any model is loaded or target probed (--backend
    torch, which times no served path, takes no graph set: check_backend refuses it)."""
    if request.served_cache is None:
        return
    if not request.graphs:
        raise ConfigError("--served-cache serves states stored with a graph set's lower_passage graph: the graph set "
                          "measured must be the one the cache was built with",
                          "give it with --graphs (the GRAPHS deformer-cache build was given)")


def with_served_codec(request, configs: list) -> list:
    """`configs`, each one whose lower_passage graph built the cache given with --served-cache carrying its
    ServedCodec (the others unchanged); a cache that is not a learned codec's, holds no windows or was built with
    none of these graph sets is refused."""
    if request.served_cache is None:
        return configs
    directory = Path(request.served_cache)
    cache = load_passage_cache(directory)  # the record checked whole, the codebook against its sha256
    if cache.codec is None:
        raise PassageCacheError(f"passage cache {directory} stores {cache.info['dtype']} states, not a learned codec's "
                                "codes", "give a cache built with deformer-cache build --dtype pq, rq or binary "
                                         "(online_served already times float32 states read from a mapped file)")
    built_with = cache.info["identity"]["lower_passage_sha256"]
    matched = [lower_passage_sha256(config) == built_with for config in configs]
    if not any(matched):  # refused in the words every command uses for a cache of another graph set
        first = configs[0]
        check_identity(cache.info, directory, SimpleNamespace(manifest=first.manifest, directory=first.graphs_dir))
    if cache.windows == 0:
        raise PassageCacheError(f"passage cache {directory} holds no windows", "build it with passages first")
    codec = cache.codec
    served = ServedCodec(cache=str(directory), name=codec.name, settings=dict(codec.settings),
                         codebook=dict(codec.codebook), codes=first_windows(cache), description=codec.describe(),
                         code_bytes_per_token=codec.code_bytes_per_token())
    product = graph_product(make_decoder(served.name, served.settings, served.codebook))
    return [dataclasses.replace(config, served_codec=dataclasses.replace(served,
                                                                         coded_upper=coded_upper(product, config)))
            if built else config for config, built in zip(configs, matched)]


def coded_upper(product, config):
    """The config's upper graph with the codec's product (decoder, mean) inside, made and loaded once here, before
    anything is timed (a server runs the product there: exporters/codec_upper.py); None where the runner decodes in
    numpy (no product, or a graph set in the ORT format only, which onnx cannot edit)."""
    path = Path(config.graphs_dir) / GRAPHS["upper"].file_name
    graph = product_graph(path, product)
    if graph is not None:
        check_loads(graph, path)
    return graph


def lower_passage_sha256(config) -> str:
    return config.manifest["graphs"]["lower_passage"]["sha256"]


def first_windows(cache) -> dict:
    """{array: [W, Lp, ...]}: the codes of the first (at most STAGED_WINDOWS) windows of the cache's first segment,
    in memory, the segment checked against its sha256 first."""
    segment = cache.segments[0]
    if not segment.verified:
        segment.verify()
    count = min(segment.windows, STAGED_WINDOWS)
    return {name: np.array(cache.array(0, f"passage_{name}")[:count]) for name in cache.codec.CODES}
