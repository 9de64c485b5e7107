"""Issue 14's measurements of the passage cache, on one graph set and one SQuAD file.

1. Build the cache of every paragraph's windows with `deformer-cache build` in float32, float16 and int8 (local
   engine), and in float16 on a local Ray with 1 and 2 workers: windows per second, bytes per window.
2. `deformer-cache verify` each: sha256 throughput (what checking at open would cost).
3. The read as served, per dtype, in 3 fresh processes: one random window's states gathered from the
   memory-mapped cache and decoded to float32, against the online path (lower_question + upper, batch 1) timed
   in the same interleaved rounds.

    python experiments/passage_cache_study.py GRAPHS SQUAD.json[.gz] OUT_DIR
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deformer_bench.environment import describe_environment
from deformer_bench.readers import parse_json

DTYPES = ("float32", "float16", "int8")
ROUNDS, WARMUP = 200, 20


def cache_cli(*args) -> dict:
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.cache", *map(str, args)],
                               capture_output=True, text=True)
    if completed.returncode:
        raise SystemExit(completed.stderr)
    return parse_json(completed.stdout, "deformer-cache's output")


def read_worker(graphs: str, cache_dir: str, seed: int) -> dict:
    """One fresh process: per round, the read (gather + decode) of one random window, then the online path."""
    from exporters.manifest import load_graph_set

    from deformer_bench.passage_cache import load_passage_cache
    from deformer_bench.runtime.sessions import GraphSetSessions
    from deformer_bench.serving import EVALUATION_SESSION

    graph_set = load_graph_set(graphs)
    cache = load_passage_cache(cache_dir, graph_set)
    cache.verify()  # so the timed reads never include a first-touch check
    sessions = GraphSetSessions(graph_set.directory, ("lower_question", "upper"), EVALUATION_SESSION)
    deformer = graph_set.manifest["deformer"]
    rng = np.random.default_rng(seed)
    question = rng.integers(3, graph_set.manifest["model"]["vocab_size"], (1, deformer["question_len"]))
    question_mask = np.ones_like(question)
    passage_mask = np.ones((1, deformer["passage_len"]), dtype=np.int64)
    read_ns, online_ns = [], []
    for round_index in range(WARMUP + ROUNDS):
        row = rng.integers(0, cache.windows, 1)
        started = time.perf_counter_ns()
        states = cache.passage_hidden(row)
        read = time.perf_counter_ns() - started
        started = time.perf_counter_ns()
        sessions.online(question, question_mask, states, passage_mask)
        online = time.perf_counter_ns() - started
        if round_index >= WARMUP:
            read_ns.append(read)
            online_ns.append(online)
    return {"read_ns": read_ns, "online_ns": online_ns, "read_p50_us": float(np.median(read_ns)) / 1e3,
            "online_p50_ms": float(np.median(online_ns)) / 1e6,
            "read_share": float(np.median(read_ns)) / float(np.median(np.add(read_ns, online_ns)))}


def main(graphs: str, squad: str, out_dir: str) -> None:
    out = Path(out_dir)
    if out.exists():
        raise SystemExit(f"{out} exists: give a new folder")
    environment = describe_environment(["python", *sys.argv])
    scratch_dir = tempfile.TemporaryDirectory(prefix="passage-cache-study-")  # the caches are not results
    scratch = Path(scratch_dir.name)
    builds = {}
    for dtype in DTYPES:
        builds[dtype] = cache_cli("build", graphs, "--passages", squad, "--out", scratch / dtype, "--dtype", dtype,
                                  "--quiet")
    for workers in (1, 2):
        builds[f"float16-ray-{workers}"] = cache_cli("build", graphs, "--passages", squad, "--out",
                                                     scratch / f"float16-ray-{workers}", "--dtype", "float16",
                                                     "--engine", "ray", "--workers", workers, "--quiet")
    info = {name: cache_cli("info", scratch / name) for name in builds}
    verify = {name: cache_cli("verify", scratch / name, "--graphs", graphs) for name in builds}
    same = all(
        (scratch / "float16" / "segment-00000" / name).read_bytes()
        == (scratch / "float16-ray-2" / "segment-00000" / name).read_bytes()
        for name in ("passage_hidden.npy",)) if (scratch / "float16-ray-2" / "segment-00000").exists() else None
    reads = {}
    for dtype in DTYPES:
        reads[dtype] = []
        for seed in range(3):
            code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                    f"from passage_cache_study import read_worker; "
                    f"print(json.dumps(read_worker({graphs!r}, {str(scratch / dtype)!r}, {seed})))")
            completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if completed.returncode:
                raise SystemExit(completed.stderr)
            reads[dtype].append(parse_json(completed.stdout.strip().splitlines()[-1], "a read worker's output"))
    result = {"graphs": graphs, "squad": squad, "builds": builds, "info": info, "verify": verify,
              "ray_segment_0_equals_local": same, "reads": reads, "environment": environment}
    scratch_dir.cleanup()
    out.mkdir(parents=True)
    (out / "passage_cache_study.json").write_text(json.dumps(result, indent=1) + "\n")
    for dtype in DTYPES:
        shares = [process["read_share"] for process in reads[dtype]]
        print(f"{dtype}: {info[dtype]['bytes_per_window']:.0f} bytes/window, build "
              f"{builds[dtype]['windows_per_second']} windows/s, read p50 "
              f"{[round(p['read_p50_us'], 1) for p in reads[dtype]]} us, online p50 "
              f"{[round(p['online_p50_ms'], 2) for p in reads[dtype]]} ms, read share {[round(s, 4) for s in shares]}")
    for name in ("float16-ray-1", "float16-ray-2"):
        print(f"{name}: {builds[name]['windows_per_second']} windows/s ({builds[name]['engine']})")
    for name, record in verify.items():
        print(f"verify {name}: {record['checked_bytes'] / record['seconds'] / 1e9:.2f} GB/s")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
