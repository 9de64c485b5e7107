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

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import numpy as np

from ..contracts import strict_json
from ..contracts.errors import PassageCacheError
from ..files import scratch_directory
from ..runtime.sessions import DEFAULT_SETTINGS, open_session
from .engines import BuildEngine
from .segments import compute_states, encoded_states, write_segment

EXTRA = "ray[data]==2.60.0"


def import_ray():
    try:
        import ray
    except ImportError:
        raise PassageCacheError("--engine ray needs Ray, which is not installed",
                                f"pip install '{EXTRA}' (or deformer-bench[ray])") from None
    return ray


@contextlib.contextmanager
def sigterm_kept():
    """ray.init installs a SIGTERM handler of its own (sys.exit(15), and Ray's C++ core prints a crash dump):
    the one there before (cli.common.run_cli's: KeyboardInterrupt, "interrupted", exit 130) is put back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def reaper(folder: str):
    """ray_reaper.py watching this process, with a fresh marker in the environment Ray's processes inherit: on
    exit it is told "done" (Ray was shut down; the folder is removed by its owner); if this process is killed,
    it kills what is left and removes `folder`."""
    marker = f"{MARKER}={uuid.uuid4().hex}"
    script = Path(__file__).with_name("ray_reaper.py")
    watch = subprocess.Popen([sys.executable, "-I", str(script), marker, folder, str(os.getpid())],
                             stdin=subprocess.PIPE, start_new_session=True)
    os.environ[MARKER] = marker.split("=", 1)[1]
    try:
        yield watch
    finally:
        os.environ.pop(MARKER, None)
        try:
            watch.stdin.write(b"done\n")
            watch.stdin.close()
        except OSError:  # it is gone already
            pass
        try:
            watch.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watch.kill()


class SegmentWriter:
    """A Ray Data actor: one lower_passage session; each row it gets is one segment to compute and write."""

    def __init__(self, graph_path: str, settings: dict, out_dir: str, batch_size: int, dtype: str, vocab_size: int):
        from pathlib import Path

        self.session = open_session(graph_path, settings)
        self.out_dir, self.batch_size, self.dtype, self.vocab_size = Path(out_dir), batch_size, dtype, vocab_size

    def __call__(self, batch: dict) -> dict:
        entries = []
        for index, ids, mask in zip(batch["index"], batch["input_ids"], batch["attention_mask"]):
            states = compute_states(self.session, np.asarray(ids, np.int64), np.asarray(mask, np.int64),
                                    self.batch_size)
            entries.append(json.dumps(write_segment(self.out_dir, int(index), ids, mask,
                                                    encoded_states(states, mask, self.dtype), self.vocab_size)))
        return {"entry": np.asarray(entries)}


# Ray's unix sockets live at TEMP/session_<date>_<pid>/sockets/plasma_store; Linux allows 107 bytes in such a path
SOCKET_PATH_LIMIT = 107
SOCKET_TAIL = "/session_2026-01-01_00-00-00_000000_{pid}/sockets/plasma_store"
MARKER = "DEFORMER_RAY_BUILD"


def socket_path_length(temp_dir: str) -> int:
    """The length of the longest unix socket path Ray makes under `temp_dir` (its date format has a fixed length)."""
    return len(os.fsencode(temp_dir + SOCKET_TAIL.format(pid=os.getpid())))


def scratch_root() -> str:
    """Where a local Ray's folder goes: TMPDIR, or /tmp when TMPDIR's path would make Ray's sockets too long."""
    scratch_name = f"/deformer-ray-{os.getpid()}-abcdefgh"  # tempfile's 8 random characters
    for root in (tempfile.gettempdir(), "/tmp"):
        if socket_path_length(root + scratch_name) <= SOCKET_PATH_LIMIT and os.access(root, os.W_OK):
            return root
    raise PassageCacheError(f"TMPDIR {tempfile.gettempdir()} is too long a path for Ray's sockets (at most "
                            f"{SOCKET_PATH_LIMIT} bytes with the folder Ray adds), and /tmp cannot be written",
                            "set TMPDIR to a short folder you can write to (e.g. TMPDIR=/var/tmp), or build with "
                            "--engine local")


class RayEngine(BuildEngine):
    """`--engine ray [--address ...]`: workers actors (default: one per whole CPU Ray reports, at most the
    segments to write).

    Without an address it starts a local Ray of its own, on the first shard, and stops it in `close` (use the
    engine as a context manager): no dashboard (Ray 2.60 still starts its API server and, through the raylet, the
    dashboard and runtime-env agents: nothing turns those off), Ray's folder in a scratch directory of the build
    (removed on close; a killed build's is removed by ray_reaper.py, else by the next Ray build), and a reaper that
    kills what a killed build's Ray left running. The build's SIGTERM handler (interrupted, exit 130) is put back
    after ray.init, which replaces it with its own (a crash dump, exit 15). A Ray this process already runs, or one
    at an address, is used as it is and left running."""

    encodes_learned_codecs = False  # its actors hold no codebook: a learned codec's cache is built locally

    def __init__(self, address: str = None, workers: int = None):
        if workers is not None and workers < 1:
            raise PassageCacheError(f"--workers must be at least 1, got {workers}", "e.g. --workers 2")
        self.address, self.workers, self.used = address, workers, {}
        self.started = None  # an ExitStack that undoes what this engine started

    def describe(self) -> dict:
        return {"engine": "ray", "address": self.address or "local", **self.used}

    def close(self) -> None:
        """Stop the local Ray this engine started (if it did), its reaper and its folder."""
        started, self.started = self.started, None
        if started is not None:
            started.close()

    def connect(self):
        ray = import_ray()
        import logging

        for name in ("ray", "ray.data"):  # its INFO lines would bury the build's own output
            logging.getLogger(name).setLevel(logging.WARNING)
        if ray.is_initialized():
            return ray
        local = self.address is None and not os.environ.get("RAY_ADDRESS")
        started = contextlib.ExitStack()
        options = {}
        try:
            if local:
                folder = started.enter_context(scratch_directory("deformer-ray-", scratch_root()))
                started.enter_context(reaper(folder))  # before ray.init: the marker reaches every Ray process
                options["_temp_dir"] = folder
            with sigterm_kept():
                try:
                    ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                             logging_level="ERROR", configure_logging=False, **options)
                except SystemExit as stop:  # SIGTERM while ray.init had its own handler in place
                    if stop.code != signal.SIGTERM:
                        raise
                    raise KeyboardInterrupt from None
            started.callback(ray.shutdown)  # first of all on close: the reaper and the folder go after it
        except BaseException as error:
            started.close()
            if not isinstance(error, Exception):
                raise
            # ConnectionError, TimeoutError, RuntimeError, ValueError: all one failure
            where = self.address or (f"RAY_ADDRESS {os.environ['RAY_ADDRESS']}" if not local else "a local Ray")
            raise PassageCacheError(f"cannot start or reach Ray at {where}: {type(error).__name__}: "
                                    f"{str(error).splitlines()[0] if str(error) else ''}",
                                    "check --address (auto, or ray://HOST:PORT of a running cluster), or "
                                    "build with --engine local") from None
        finally:
            os.environ.pop(MARKER, None)  # Ray's processes have it; nothing else this process starts needs it
        self.started = started
        return ray

    def build(self, graph_set, chunks: list, out_dir, batch_size: int, dtype: str, listed, progress: bool,
              codec=None) -> None:
        """BuildEngine.build; `codec` is always None (encodes_learned_codecs)."""
        if not chunks:
            return
        ray = self.connect()
        cpus = float(ray.cluster_resources().get("CPU", 1))
        workers = min(self.workers or max(1, int(cpus)), len(chunks))
        per_actor = min(1.0, max(0.1, (cpus - 0.5) / workers))
        threads = max(1, math.floor(per_actor))
        self.used = {"workers": workers, "cpus_per_worker": round(per_actor, 2), "cluster_cpus": cpus,
                     "threads_per_session": threads}
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        items = [{"index": index, "input_ids": ids, "attention_mask": mask} for index, ids, mask in chunks]
        settings = {**DEFAULT_SETTINGS, "intra_op_threads": threads, "inter_op_threads": 1}
        dataset = ray.data.from_items(items).map_batches(
            SegmentWriter, batch_size=1, batch_format="numpy", concurrency=workers, num_cpus=per_actor,
            fn_constructor_args=(str(graph_set.path("lower_passage")), settings, str(out_dir), batch_size, dtype,
                                 graph_set.manifest["model"]["vocab_size"]))
        for row in dataset.iter_rows():
            listed(strict_json.loads(row["entry"]))
