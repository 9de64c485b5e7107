"""The build engines: what computes and writes a build's segments. build.py walks the windows, decides which are
new and cuts them into segments; an engine writes them, this process's (LocalEngine) or a Ray cluster's
(ray_engine.RayEngine), and the build lists each segment in cache.json as the engine reports it."""

from abc import ABC, abstractmethod
from pathlib import Path

from tqdm import tqdm

from ..contracts.errors import PassageCacheError
from .segments import compute_states, encoded_states, write_segment


class BuildEngine(ABC):
    """What a build asks of an engine. `build` computes and writes each chunk (segment index, [n, Lp] ids, mask)
    as a segment of `out_dir`, and calls `listed` with each segment's record entry as it is written (a kill after
    that keeps it); `describe` is what the build's record keeps of the engine (schema.py: "local", or the Ray
    engine's object); `close` stops what the engine started (use it as a context manager).
    `encodes_learned_codecs`: whether its workers can encode with a learned codec's codebook; a learned codec's
    cache is refused, before any file, with an engine that cannot (check_encodes_learned_codec)."""

    encodes_learned_codecs: bool = False

    @abstractmethod
    def describe(self):
        """The build record's "engine": a name, or an object of the settings it used."""

    @abstractmethod
    def build(self, graph_set, chunks: list, out_dir: Path, batch_size: int, dtype: str, listed, progress: bool,
              codec=None) -> None:
        """Write `chunks` as segments, `batch_size` windows a lower_passage run, stored as `dtype` (with `codec`,
        a learned codec's codes), calling `listed(entry)` for each."""

    def close(self) -> None:
        """Stop what the engine started; nothing by default."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def check_encodes_learned_codec(engine: BuildEngine, name: str) -> None:
    """Refuse a learned codec's (`name`'s) cache with an engine whose workers would need its codebook."""
    if not engine.encodes_learned_codecs:
        raise PassageCacheError(f"a {name} cache is built with --engine local only (its Ray workers would need its "
                                "codebook)", "build it with --engine local")


class LocalEngine(BuildEngine):
    """`--engine local`: segment after segment in this process, on a lower_passage session of `session_factory`
    (a graph path -> an ONNX Runtime session) opened for each shard that has new windows."""

    encodes_learned_codecs = True

    def __init__(self, session_factory):
        self.session_factory = session_factory

    def describe(self) -> str:
        return "local"

    def build(self, graph_set, chunks: list, out_dir: Path, batch_size: int, dtype: str, listed, progress: bool,
              codec=None) -> None:
        session = self.session_factory(graph_set.path("lower_passage")) if chunks else None
        with tqdm(total=sum(len(ids) for _, ids, _ in chunks), desc="passage cache", unit="window",
                  disable=not progress) as bar:
            for index, ids, mask in chunks:
                states = compute_states(session, ids, mask, batch_size, bar.update)
                listed(write_segment(out_dir, index, ids, mask, encoded_states(states, mask, dtype, codec),
                                     graph_set.manifest["model"]["vocab_size"]))
