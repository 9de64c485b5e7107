"""The Ray build engine (deformer_bench/passage_cache/ray_engine.py): a build on a local Ray stores what the local
build stores, an unreachable address is one clear error; its own Ray started without leftovers, stopped on close, and
nothing left by a killed build."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deformer_bench.contracts.errors import PassageCacheError
from deformer_bench.contracts.manifest import load_graph_set
from tests.conftest import SQUAD_DIR
from tests.passage_cache.conftest import build, windows


def require_ray():
    """Ray, or a skip; under CI (which installs the test extra) a missing Ray fails instead."""
    if os.environ.get("CI"):
        import ray

        return ray
    return pytest.importorskip("ray")


def test_ray_folder_root_keeps_its_socket_paths_within_the_limit(monkeypatch):
    import tempfile

    from deformer_bench.passage_cache import ray_engine

    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    assert ray_engine.scratch_root() == "/tmp"
    # Ray would refuse a socket path past 107 bytes deep inside ray.init: a long TMPDIR falls back to /tmp
    monkeypatch.setattr(tempfile, "tempdir", "/tmp/" + "x" * 60)
    assert ray_engine.socket_path_length(tempfile.tempdir + "/deformer-ray-1234567-abcdefgh") > 107
    assert ray_engine.scratch_root() == "/tmp"
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PassageCacheError, match="too long a path for Ray's sockets") as raised:
        ray_engine.scratch_root()
    assert "TMPDIR" in raised.value.hint


@pytest.fixture
def short_tmp():
    """A TMPDIR short enough for Ray's socket paths (pytest's tmp_path is not: Ray's folder would go to /tmp)."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="dr-", dir="/tmp")
    yield Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_local_ray_runs_in_the_builds_scratch_and_is_stopped_on_close(tiny_graphs, tmp_path, short_tmp,
                                                                        monkeypatch):
    """Ray's folder in a scratch directory (not /tmp/ray/session_*), removed on close with Ray itself; the
    SIGTERM handler of the command (interrupted, exit 130) survives ray.init."""
    ray = require_ray()
    import tempfile

    from deformer_bench.passage_cache.ray_engine import RayEngine
    from deformer_bench.contracts.manifest import load_graph_set

    scratch_root = short_tmp
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))

    def ours(signal_number, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        with RayEngine(workers=1) as engine:
            engine.connect()
            assert signal.getsignal(signal.SIGTERM) is ours
            [folder] = scratch_root.glob("deformer-ray-*")
            assert list(folder.glob("session_*/sockets"))
            ids, mask = windows()
            cache = build(load_graph_set(tiny_graphs), ids, mask, tmp_path / "cache", segment_windows=2,
                          engine=engine)
            assert cache.info["complete"]
        assert not ray.is_initialized() and not list(scratch_root.glob("deformer-ray-*"))
    finally:
        signal.signal(signal.SIGTERM, previous)
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_build(tmp_path_factory, tiny_with_tokenizer):
    """(graph set, passages file) for a build of a few hundred windows: long enough to be killed midway."""
    from deformer_bench.model import Deformer
    from deformer_bench.exporters.onnx_export import export_graph_set

    root = tmp_path_factory.mktemp("ray-build")
    export_graph_set(Deformer.from_pretrained(tiny_with_tokenizer, layer=1, question_len=8, passage_len=24),
                     root / "graphs", progress=False)
    with gzip.open(SQUAD_DIR / "dev-v1.1.json.gz", "rt", encoding="utf-8") as handle:
        paragraphs = [paragraph["context"] for article in json.load(handle)["data"][:4]
                      for paragraph in article["paragraphs"]]
    (root / "passages.jsonl").write_text("".join(json.dumps({"id": f"p{index}", "text": text}) + "\n"
                                                 for index, text in enumerate(paragraphs[:120])))
    return root / "graphs", root / "passages.jsonl"


def listed_segments(cache: Path) -> list:
    """The segments cache.json lists (written whole and renamed: never read half-written); [] before it exists."""
    try:
        return json.loads((cache / "cache.json").read_text())["segments"]
    except (OSError, ValueError, KeyError):
        return []


def start_build(ray_build, tmp_path, short_tmp):
    """A `deformer-cache build --engine ray` process, once its first segments are listed (Ray is up, its
    agents too); its Ray folder goes under short_tmp."""
    graphs, passages = ray_build
    process = subprocess.Popen([sys.executable, "-m", "deformer_bench.cli.cache", "build", str(graphs), "--passages",
                                str(passages), "--out", str(tmp_path / "cache"), "--engine", "ray", "--workers", "1",
                                "--doc-stride", "8", "--segment-windows", "8", "--quiet"],
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(short_tmp)})
    for _ in range(600):  # listed in cache.json, not only renamed into place: a build interrupted before it listed
        # any segment removes the folder it made ("nothing was written"), which is another test's case
        if listed_segments(tmp_path / "cache") or process.poll() is not None:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1][-2000:]
    return process


def test_sigterm_during_a_ray_build_is_an_interrupt_like_the_local_engines(ray_build, tmp_path, short_tmp):
    """Issue 22, finding 9: SIGTERM ended with Ray's crash dump (exit 15) instead of "interrupted" and 130."""
    require_ray()
    process = start_build(ray_build, tmp_path, short_tmp)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted: the segments finished so far are kept" in stderr and "SIGTERM received" not in stderr
    assert not list(short_tmp.glob("deformer-ray-*"))  # Ray's folder went with Ray
    record = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert not record["complete"] and record["segments"]  # the same command goes on from there


def test_a_killed_ray_build_leaves_no_ray_process_and_no_ray_folder(ray_build, tmp_path, short_tmp):
    """Issue 22, finding 10: kill -9 left ray::DashboardAgent and ray::RuntimeEnvAgent running for minutes (they
    spend 60 s telling the dead GCS), and a Ray session folder."""
    require_ray()
    from deformer_bench.passage_cache.ray_reaper import build_processes

    process = start_build(ray_build, tmp_path, short_tmp)
    [folder] = short_tmp.glob("deformer-ray-*")
    ray_processes = build_processes(b"-", os.path.realpath(folder), spared=process.pid)
    assert len(ray_processes) >= 4  # GCS, raylet, the two agents, the workers
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (folder.exists() or any(alive(pid) for pid in ray_processes)):
        time.sleep(0.5)
    assert not [pid for pid in ray_processes if alive(pid)] and not folder.exists()


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped by its parent, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_build_on_a_local_ray_stores_what_the_local_build_stores(tiny_graphs, tmp_path):
    ray = require_ray()
    from deformer_bench.passage_cache.ray_engine import RayEngine

    graph_set = load_graph_set(tiny_graphs)
    ids, mask = windows()
    local = build(graph_set, ids, mask, tmp_path / "local", dtype="int8", batch_size=2, segment_windows=2)
    try:
        with RayEngine(workers=2) as engine:
            on_ray = build(graph_set, ids, mask, tmp_path / "ray", dtype="int8", batch_size=2, segment_windows=2,
                           engine=engine)
    finally:
        ray.shutdown()  # a failed build's too
    assert on_ray.info["builds"][-1]["engine"]["workers"] == 2 and on_ray.info["complete"]
    assert sorted(segment.name for segment in on_ray.segments) == ["segment-00000", "segment-00001"]
    # the same numbers to the last digit, whichever segment finished first
    assert np.array_equal(on_ray.passage_hidden(on_ray.rows(ids, mask)), local.passage_hidden(local.rows(ids, mask)))
    on_ray.verify()


def test_an_unreachable_ray_address_is_one_clear_error(tiny_graphs, tmp_path):
    require_ray()
    from deformer_bench.passage_cache.ray_engine import RayEngine

    ids, mask = windows()
    with pytest.raises(PassageCacheError, match="cannot start or reach Ray at ray://127.0.0.1:1"):
        build(load_graph_set(tiny_graphs), ids, mask, tmp_path / "cache", engine=RayEngine("ray://127.0.0.1:1"))
    assert not (tmp_path / "cache").exists()
