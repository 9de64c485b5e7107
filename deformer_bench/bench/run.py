"""Benchmark orchestration: export (or verify) graph sets, send runner jobs, save one results JSON.

Per configuration (model, k) and batch size:
  * `processes` timing jobs (default 3), one after another, each a fresh process timing the three paths
    interleaved (paired samples); the spread of their figures says how far one process can be trusted;
  * one memory job per path: a fresh process that loads only that path's graphs;
  * the paper's operator-bytes metric and the FLOP ideal, computed here from graph and config.
Around it all, the machine state (load, other busy processes), so a figure from a busy machine is flagged.
"""

import datetime
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..environment import describe_environment
from ..errors import ManifestError, first_line
from ..files import scratch_directory, staged_directory
from . import machine_state
from .flops import path_flops
from .memory import operator_bytes
from .runner import PATH_GRAPHS, PROTOCOL_VERSION
from .summary import HEADLINE_PROCESSES, headline_check, summarise_batch

# 2: several timing processes per batch (`processes`, `across_processes`), `machine_state`, `headline`.
RESULTS_FORMAT_VERSION = 2
PATHS = tuple(PATH_GRAPHS)
DEFAULT_PROCESSES = HEADLINE_PROCESSES


@dataclass(frozen=True)
class BenchConfig:
    """One graph set to measure, as its manifest describes it."""

    label: str
    graphs_dir: Path
    manifest: dict


def graph_input_shapes(manifest: dict, batch: int) -> dict:
    """{graph: {input: concrete shape}} at full length, derived from the graphs' axis names."""
    from ..runtime.contract import BATCH, GRAPHS, HIDDEN, PASSAGE_LENGTH, QUESTION_LENGTH, SEQUENCE_LENGTH

    deformer = manifest["deformer"]
    sizes = {BATCH: batch, QUESTION_LENGTH: deformer["question_len"], PASSAGE_LENGTH: deformer["passage_len"],
             SEQUENCE_LENGTH: deformer["question_len"] + deformer["passage_len"],
             HIDDEN: manifest["model"]["hidden_size"]}
    return {name: {tensor: tuple(sizes[axis] for axis in axes) for tensor, axes in spec.inputs.items()}
            for name, spec in GRAPHS.items()}


def graph_operator_bytes(path: Path, shapes: dict):
    """operator_bytes of one graph; a graph onnx cannot parse (damaged after export) is a ManifestError."""
    try:
        return operator_bytes(path, shapes)
    except Exception as error:
        raise ManifestError(f"graph {path} cannot be read: {first_line(error)}",
                            "export the graph set again (its files were damaged after export)") from None


def paper_memory_metric(config: BenchConfig) -> dict:
    """Operator bytes of one query (batch 1) on each path."""
    shapes = graph_input_shapes(config.manifest, 1)
    per_graph = {graph: graph_operator_bytes(config.graphs_dir / f"{graph}.onnx", shapes[graph]) for graph in shapes}
    result = {path: sum(per_graph[graph][0] for graph in graphs) for path, graphs in PATH_GRAPHS.items()}
    result["unresolved_tensors"] = sum(unresolved for _, unresolved in per_graph.values())
    return result


def config_flops(manifest: dict) -> dict:
    model, deformer = manifest["model"], manifest["deformer"]
    return path_flops(model["num_layers"], deformer["layer"], model["hidden_size"], model["intermediate_size"],
                      deformer["question_len"], deformer["passage_len"]).to_dict()


def base_job(config: BenchConfig, device, profile, batch: int) -> dict:
    deformer = config.manifest["deformer"]
    return {
        "protocol_version": PROTOCOL_VERSION,
        "graphs_dir": str(config.graphs_dir),
        "batch_size": batch,
        "question_len": deformer["question_len"],
        "passage_len": deformer["passage_len"],
        "passage_token_type": deformer["passage_token_type"],
        "vocab_size": config.manifest["model"]["vocab_size"],
        "seed": profile.seed,
        "session": session_settings(device, profile),
    }


def session_settings(device, profile) -> dict:
    return {"provider": device.provider, "intra_op_threads": profile.intra_op_threads,
            "inter_op_threads": profile.inter_op_threads, "allow_spinning": profile.allow_spinning,
            "graph_optimization": profile.graph_optimization}


def timing_job(config: BenchConfig, device, profile, batch: int) -> dict:
    return {
        **base_job(config, device, profile, batch), "mode": "timing", "paths": list(PATHS),
        "warmup": {"min_count": profile.warmup_min_count, "min_time_s": profile.warmup_min_time_s,
                   "max_time_s": profile.max_time_s},
        "measure": {"min_count": profile.min_count, "min_time_s": profile.min_time_s,
                    "max_time_s": profile.max_time_s},
    }


def measure_batch(config: BenchConfig, device, target, profile, batch: int, scratch: Path,
                  processes: int = DEFAULT_PROCESSES) -> dict:
    cache = scratch / f"passage_cache_b{batch}.npy"
    job = timing_job(config, device, profile, batch)
    # Every process computes the same passage states (same seed); the first one saves them for the memory jobs.
    timings = [target.run_job({**job, "passage_cache_out": str(cache) if index == 0 else None})
               for index in range(processes)]
    memory = {
        path: target.run_job({**base_job(config, device, profile, batch), "mode": "memory", "path": path,
                              "iterations": profile.memory_iterations, "passage_cache_in": str(cache)})
        for path in PATHS
    }
    case = f"{config.label} k={config.manifest['deformer']['layer']} batch {batch}"
    return summarise_batch(case, batch, timings, memory)


def _mb(value) -> str:
    return f"{value:.0f} MB" if value is not None else "n/a"


def describe_batch(config: BenchConfig, record: dict, ideal: float) -> str:
    latency, pooled = record["latency"], record["speedup_vs_unsplit"]["online"]
    across = record["across_processes"]["speedup_vs_unsplit"]["online"]
    memory = record["memory"]
    return (f"{config.label} k={config.manifest['deformer']['layer']} batch {record['batch_size']}: "
            f"unsplit p50 {latency['unsplit']['p50_ms']:.2f} ms, online {latency['online']['p50_ms']:.2f} ms -> "
            f"{across['median']:.2f}x (processes {across['min']:.2f}..{across['max']:.2f}; pooled "
            f"{pooled['ratio']:.2f}x [{pooled['ci95_low']:.2f}, {pooled['ci95_high']:.2f}]) "
            f"(FLOP ideal {ideal:.2f}x); peak RSS unsplit {_mb(memory['unsplit']['peak_rss_mb'])}, "
            f"online {_mb(memory['online']['peak_rss_mb'])}")


def measure_config(config: BenchConfig, device, profile, progress: bool,
                   processes: int = DEFAULT_PROCESSES, operator_bytes_record: dict = None) -> dict:
    target = device.make_target()
    flops = config_flops(config.manifest)
    record = {
        "label": config.label,
        "device": device.name,
        "model": config.manifest["model"],
        "deformer": config.manifest["deformer"],
        "opset": config.manifest["opset"],
        "validation": config.manifest["validation"],
        "flops": flops,
        "operator_bytes": operator_bytes_record or paper_memory_metric(config),
        "batches": [],
    }
    with scratch_directory("deformer-bench-scratch-") as scratch:
        for batch in profile.batch_sizes:
            batch_record = measure_batch(config, device, target, profile, batch, Path(scratch), processes)
            record["batches"].append(batch_record)
            tqdm.write(describe_batch(config, batch_record, flops["ideal_speedup"]))
            for warning in batch_record["warnings"]:
                tqdm.write(f"warning: {warning}", file=sys.stderr)
    return record


def new_results_dir(output_root: Path, profile_name: str, label: str) -> Path:
    """A new dated directory; an existing run is never overwritten."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{profile_name}-{label}").strip("-").lower()
    candidate, counter = output_root / f"{stamp}-{slug}", 1
    while candidate.exists():
        counter += 1
        candidate = output_root / f"{stamp}-{slug}-{counter}"
    return candidate


def save_results(results: dict, output_root: Path, label: str) -> Path:
    """Write results.json and the report into a temporary directory, then rename it into place. A results
    root created here and left empty by a failure is removed again."""
    from ..report import RESULTS_FILE, write_report

    created = not output_root.exists()
    output_root.mkdir(parents=True, exist_ok=True)
    final = new_results_dir(output_root, results["profile"]["name"], label)
    try:
        with staged_directory(final) as staging:
            (staging / RESULTS_FILE).write_text(json.dumps(results, indent=1) + "\n")
            write_report(staging)
    except BaseException:
        if created and not any(output_root.iterdir()):
            output_root.rmdir()
        raise
    return final


def start_machine_state(take_snapshot=machine_state.snapshot) -> dict:
    """The machine before any export or measurement; a busy one is warned about now, not only at the end."""
    start = take_snapshot()
    for warning in machine_state.state_warnings(start, None, os.cpu_count() or 1):
        tqdm.write(f"warning: {warning}", file=sys.stderr)
    return start


def run_benchmark(configs: list, devices: list, profile, command: list, note: str = "", progress: bool = True,
                  processes: int = DEFAULT_PROCESSES, machine_start: dict = None,
                  take_snapshot=machine_state.snapshot) -> dict:
    """Measure every config on every device; returns the results document (not yet saved)."""
    start = machine_start if machine_start is not None else start_machine_state(take_snapshot)
    results = {
        "format_version": RESULTS_FORMAT_VERSION,
        "environment": describe_environment(command),
        "profile": profile.to_dict(),
        "note": note,
        "timing_processes": processes,
        "configs": [],
    }
    # Read every graph (the paper's memory metric) before the first measurement: a damaged graph of the last
    # config is refused now, not after minutes of timing the others.
    operator_bytes_records = {id(config): paper_memory_metric(config) for config in configs}
    jobs = [(config, device) for device in devices for config in configs]
    for config, device in tqdm(jobs, desc="bench", unit="config", disable=not progress):
        results["configs"].append(measure_config(config, device, profile, progress, processes,
                                                 operator_bytes_records[id(config)]))
    state = machine_state.machine_state_record(start, take_snapshot())
    results["machine_state"] = state
    results["headline"] = headline_check(profile.name, processes, state, results["configs"])
    results["warnings"] = state["warnings"] + process_count_warnings(profile.name, processes) + [
        warning for config in results["configs"] for batch in config["batches"] for warning in batch["warnings"]]
    return results


def process_count_warnings(profile_name: str, processes: int) -> list:
    if processes >= HEADLINE_PROCESSES or profile_name.endswith("+quick"):
        return []
    return [f"{processes} timing process(es) per case: too few to know how far one process can be trusted; a "
            f"headline figure needs at least {HEADLINE_PROCESSES} (--processes)"]
