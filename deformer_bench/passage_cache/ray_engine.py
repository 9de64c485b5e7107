"""Building a passage cache on Ray: Ray Data over the build's segments, an actor pool of ONNX Runtime sessions.

Each segment to write (its window ids and masks) is one row of a Ray dataset; `map_batches` hands rows to a pool
of actors, each holding one lower_passage session, which compute the segment's states in the same batches as the
local build (so both engines store the same numbers) and write it whole into the cache directory. The driver
lists each segment in cache.json as its actor reports it: a killed build keeps every listed segment, whichever
engine wrote it. On one machine it starts a local Ray with the cores there; with an address, the same command
spreads over a cluster, whose workers must see the cache directory at the same path (a shared file system).

A sharded build (build_passage_cache_from_shards) calls `build` once per shard: each shard starts its own actor
pool (~5 s here), and the record describes the last shard's pool. Shards of 20,000 passages take minutes each on
a machine, so the start is a small share; on a large cluster, larger shards keep it so.

Sizing: each actor asks for at most one CPU and leaves half a CPU to Ray Data's own tasks. On a 2-core machine
two actors of one whole CPU each leave nothing for the task that reads the rows, and the pipeline never finishes
(measured); ONNX Runtime gets the actor's whole share of cores as threads.
"""

import json
import math

import numpy as np

from ..errors import PassageCacheError
from ..runtime import strict_json

EXTRA = "ray[data]==2.60.0"


def import_ray():
    try:
        import ray
    except ImportError:
        raise PassageCacheError("--engine ray needs Ray, which is not installed",
                                f"pip install '{EXTRA}' (or deformer-bench[ray])") from None
    return ray


class SegmentWriter:
    """A Ray Data actor: one lower_passage session; each row it gets is one segment to compute and write."""

    def __init__(self, graph_path: str, settings: dict, out_dir: str, batch_size: int, dtype: str, vocab_size: int):
        from pathlib import Path

        from ..runtime.sessions import open_session

        self.session = open_session(graph_path, settings)
        self.out_dir, self.batch_size, self.dtype, self.vocab_size = Path(out_dir), batch_size, dtype, vocab_size

    def __call__(self, batch: dict) -> dict:
        from .build import compute_states, write_segment
        from .codecs import encode

        entries = []
        for index, ids, mask in zip(batch["index"], batch["input_ids"], batch["attention_mask"]):
            states = compute_states(self.session, np.asarray(ids, np.int64), np.asarray(mask, np.int64),
                                    self.batch_size)
            entries.append(json.dumps(write_segment(self.out_dir, int(index), ids, mask, encode(states, self.dtype),
                                                    self.vocab_size)))
        return {"entry": np.asarray(entries)}


class RayEngine:
    """`--engine ray [--address ...]`: workers actors (default: one per whole CPU Ray reports, at most the
    segments to write)."""

    def __init__(self, address: str = None, workers: int = None):
        if workers is not None and workers < 1:
            raise PassageCacheError(f"--workers must be at least 1, got {workers}", "e.g. --workers 2")
        self.address, self.workers, self.used = address, workers, {}

    def describe(self) -> dict:
        return {"engine": "ray", "address": self.address or "local", **self.used}

    def connect(self):
        ray = import_ray()
        import logging

        for name in ("ray", "ray.data"):  # its INFO lines would bury the build's own output
            logging.getLogger(name).setLevel(logging.WARNING)
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", configure_logging=False)
            except Exception as error:  # ConnectionError, TimeoutError, RuntimeError, ValueError: all one failure
                where = self.address or "a local Ray"
                raise PassageCacheError(f"cannot start or reach Ray at {where}: {type(error).__name__}: "
                                        f"{str(error).splitlines()[0] if str(error) else ''}",
                                        "check --address (auto, or ray://HOST:PORT of a running cluster), or "
                                        "build with --engine local") from None
        return ray

    def build(self, graph_set, chunks: list, out_dir, batch_size: int, dtype: str, listed, progress: bool) -> None:
        if not chunks:
            return
        ray = self.connect()
        from ..serving import EVALUATION_SESSION

        cpus = float(ray.cluster_resources().get("CPU", 1))
        workers = min(self.workers or max(1, int(cpus)), len(chunks))
        per_actor = min(1.0, max(0.1, (cpus - 0.5) / workers))
        threads = max(1, math.floor(per_actor))
        self.used = {"workers": workers, "cpus_per_worker": round(per_actor, 2), "cluster_cpus": cpus,
                     "threads_per_session": threads}
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        items = [{"index": index, "input_ids": ids, "attention_mask": mask} for index, ids, mask in chunks]
        settings = {**EVALUATION_SESSION, "intra_op_threads": threads, "inter_op_threads": 1}
        dataset = ray.data.from_items(items).map_batches(
            SegmentWriter, batch_size=1, batch_format="numpy", concurrency=workers, num_cpus=per_actor,
            fn_constructor_args=(str(graph_set.path("lower_passage")), settings, str(out_dir), batch_size, dtype,
                                 graph_set.manifest["model"]["vocab_size"]))
        for row in dataset.iter_rows():
            listed(strict_json.loads(row["entry"]))
