#!/usr/bin/env python3
"""The benchmark runner: the only code that runs on the measured machine.

It imports numpy, onnxruntime, the standard library, deformer_bench.contracts and deformer_bench.runtime (which
import only those, and threadpoolctl where it is installed: a codec's decode holds numpy's BLAS to one thread),
reads one JSON job (contracts.protocol) on stdin and writes one JSON result, so any transport (a local process,
ssh, adb) can carry it. Sessions and the three paths are runtime.sessions', as everywhere else.
Each job runs in a fresh process: nothing warmed or allocated by an earlier job is reused.

Every path in a job is relative to the runner's working directory, the work directory the host staged on the
target (graphs, inputs, passage states): the host never sends a path of its own.

Modes:
  probe   what this machine is (runtime.target_environment), read here, and which providers onnxruntime has.
  timing  loads every graph, then times the job's paths interleaved round by round, so that the
          unsplit model and the DeFormer path see the same machine state (paired samples).
  memory  loads only one path's graphs and records its resident memory: after loading (the
          weights baseline) and the peak while it runs. Linux: /proc (VmRSS, VmHWM reset after loading);
          macOS and the BSDs: `ps` for the current RSS and getrusage's lifetime peak (bytes on macOS),
          which includes loading (`peak_excludes_loading` is then false). On a GPU, NVML's figure for this
          process after loading and after the runs (ONNX Runtime's arena keeps its high-water mark).
  parity  runs each path once on the inputs the host staged and saves the outputs for the host to compare
          with its own: the functional check of a device, the only mode an emulated target runs. Its wall
          times are recorded as such (emulated_wall_s on an emulator), never as latencies.
"""

import dataclasses
import json
import os
import sys
import time

import numpy as np

from deformer_bench.contracts import strict_json
from deformer_bench.contracts.protocol import (CODEC_SERVED_PATH, FLOAT32_BASELINE, PATH_GRAPHS, PROTOCOL_VERSION,
                                               SERVED_PATH, Job, MemoryResult, ParityResult, ProbeResult,
                                               ProtocolError, TimingResult)
from deformer_bench.runtime import target_environment
from deformer_bench.runtime.codec_decode import blas_threads_limited
from deformer_bench.runtime.paths import make_inputs, path_call, served_sources
from deformer_bench.runtime.sessions import GraphSetSessions

def interleave(calls, min_count, min_time_s, max_time_s, clock=time.perf_counter_ns):
    """Run every call once per round, rotating the order, until each has `min_count` samples and
    at least `min_time_s` have passed (or `max_time_s`). Returns ({name: [ns, ...]}, stopped_by_cap).

    Round r times call (r + i) mod n at position i, so no path always runs first or after another.
    """
    names = list(calls)
    samples = {name: [] for name in names}
    start = clock()
    round_index = 0
    while True:
        elapsed_s = (clock() - start) / 1e9
        if round_index >= min_count and elapsed_s >= min_time_s:
            return samples, False
        if elapsed_s >= max_time_s and round_index >= 1:
            return samples, True
        for position in range(len(names)):
            name = names[(round_index + position) % len(names)]
            before = clock()
            calls[name]()
            samples[name].append(clock() - before)
        round_index += 1


def run_timing(job) -> TimingResult:
    thermal_before = target_environment.thermal_readings()
    load_start = time.perf_counter()
    graph_set = GraphSetSessions(job.graphs_dir, settings=job.session)
    load_s = time.perf_counter() - load_start
    inputs = make_inputs(job.inputs)
    passage_cache = path_call("passage_precompute", graph_set, inputs, None)()
    if job.passage_cache_out:
        np.save(job.passage_cache_out, passage_cache)
    served = served_sources(job.paths, passage_cache, job.served_cache_mb, job.inputs.seed, job.served_codec,
                            job.session)
    calls = {path: path_call(path, graph_set, inputs, passage_cache, served) for path in job.paths}
    if job.float32_graphs_dir:  # a variant: its float32 parent's unsplit model in the same rounds
        float32 = GraphSetSessions(job.float32_graphs_dir, ("full",), settings=job.session)
        calls[FLOAT32_BASELINE] = path_call("unsplit", float32, inputs, None)
    interleave(calls, job.warmup.min_count, job.warmup.min_time_s, job.warmup.max_time_s)
    samples, capped = interleave(calls, job.measure.min_count, job.measure.min_time_s, job.measure.max_time_s)
    file_bytes = {path: source.file_bytes for path, source in served.items()}
    for source in served.values():  # the next timing process writes its own
        source.remove()
    codec = CODEC_SERVED_PATH in served
    return TimingResult(samples_ns=samples, stopped_by_time_cap=capped, load_s=load_s,
                        served_cache_bytes=file_bytes.get(SERVED_PATH),
                        served_codes_bytes=file_bytes.get(CODEC_SERVED_PATH),
                        served_codec_one_blas_thread=blas_threads_limited() if codec else None,
                        providers_used=graph_set.providers_used(),
                        provider_options_used=graph_set.provider_options_used(), thermal_before_c=thermal_before,
                        thermal_after_c=target_environment.thermal_readings())


PROC_STATUS = "/proc/self/status"  # Linux; absent on macOS and the BSDs
PROC_CLEAR_REFS = "/proc/self/clear_refs"


def read_status_kb(field):
    """VmRSS / VmHWM of this process from /proc (Linux); None where unavailable."""
    try:
        with open(PROC_STATUS) as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def ps_rss_kb():
    """This process's resident set in KiB from `ps -o rss=` (KiB on macOS, the BSDs and Linux); None if ps fails."""
    import subprocess

    try:
        completed = subprocess.run(["ps", "-o", "rss=", "-p", str(os.getpid())], capture_output=True, text=True,
                                   timeout=30)
        return int(completed.stdout.split()[0]) if completed.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def ru_maxrss_kb():
    """Lifetime peak RSS in KiB from getrusage: ru_maxrss is bytes on macOS, KiB on Linux and the BSDs."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform == "darwin" else peak


def current_rss():
    """(KiB, how it was read): /proc on Linux, ps elsewhere; (None, None) if neither works."""
    kb = read_status_kb("VmRSS")
    if kb is not None:
        return kb, "proc"
    kb = ps_rss_kb()
    return (kb, "ps") if kb is not None else (None, None)


def peak_rss():
    """(KiB, how it was read): VmHWM on Linux (resettable), else getrusage's lifetime peak."""
    kb = read_status_kb("VmHWM")
    if kb is not None:
        return kb, "proc_vmhwm"
    kb = ru_maxrss_kb()
    return (kb, "ru_maxrss") if kb is not None else (None, None)


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak measured excludes loading."""
    try:
        with open(PROC_CLEAR_REFS, "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def megabytes(kb):
    return kb / 1024 if kb is not None else None


def gpu_memory_mb():
    """This process's memory on the GPU (NVML), or None where NVML or a GPU is missing."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # not installed, no driver
        return None
    try:
        used = 0
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if process.pid == os.getpid() and process.usedGpuMemory is not None:
                    used += process.usedGpuMemory
        return used / 2**20
    except Exception:
        return None
    finally:
        pynvml.nvmlShutdown()


def run_memory(job) -> MemoryResult:
    path = job.path
    graph_set = GraphSetSessions(job.graphs_dir, PATH_GRAPHS[path], settings=job.session)
    inputs = make_inputs(job.inputs)
    passage_cache = np.load(job.passage_cache_in) if path.startswith("online") else None
    call = path_call(path, graph_set, inputs, passage_cache)
    on_gpu = graph_set.device != "cpu"
    gpu_after_load = gpu_memory_mb() if on_gpu else None
    load_peak_kb, _ = peak_rss()
    baseline_kb, rss_source = current_rss()
    peak_reset = reset_peak_rss()
    for _ in range(job.iterations):
        call()
    peak_kb, peak_source = peak_rss()
    return MemoryResult(
        gpu_memory_after_load_mb=gpu_after_load, gpu_memory_after_runs_mb=gpu_memory_mb() if on_gpu else None,
        path=path, rss_after_load_mb=megabytes(baseline_kb), rss_source=rss_source,
        load_peak_rss_mb=megabytes(load_peak_kb), peak_rss_mb=megabytes(peak_kb), peak_source=peak_source,
        # Only a reset VmHWM excludes loading; getrusage's peak is the process's lifetime peak.
        peak_excludes_loading=peak_reset and peak_source == "proc_vmhwm", iterations=job.iterations)


def run_probe(job) -> ProbeResult:
    return ProbeResult(environment=target_environment.describe_target())


def run_parity(job) -> ParityResult:
    """Each path once on the staged inputs; outputs saved to job.outputs_file (.npz) for the host to compare."""
    graph_set = GraphSetSessions(job.graphs_dir, settings=job.session)
    with np.load(job.inputs_file) as staged:
        inputs = {name: staged[name] for name in staged.files}
    wall_s, outputs = {}, {}
    start = time.perf_counter()
    outputs["passage_hidden"] = graph_set.lower_passage(inputs["passage_input_ids"], inputs["passage_attention_mask"])
    wall_s["passage_precompute"] = time.perf_counter() - start
    logit_paths = [path for path in job.paths if path != "passage_precompute"]
    served = served_sources(job.paths, outputs["passage_hidden"], 0, job.inputs.seed)  # checks the gather
    for path in logit_paths:
        call = path_call(path, graph_set, inputs, outputs["passage_hidden"], served)
        start = time.perf_counter()
        start_logits, end_logits = call()
        wall_s[path] = time.perf_counter() - start
        outputs[f"{path}_start_logits"], outputs[f"{path}_end_logits"] = start_logits, end_logits
    save_arrays(job.outputs_file, outputs)
    return ParityResult(wall_s=wall_s, outputs_file=job.outputs_file, providers_used=graph_set.providers_used(),
                        provider_options_used=graph_set.provider_options_used())


def save_arrays(path: str, arrays: dict) -> None:
    """An .npz written whole, then renamed into place."""
    with open(path + ".partial", "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(path + ".partial", path)


MODES = {"probe": run_probe, "timing": run_timing, "memory": run_memory, "parity": run_parity}


def pin_cores(cores):
    """Run on these cores only (Linux; where the OS refuses, the record says which cores were usable)."""
    if cores:
        try:
            os.sched_setaffinity(0, cores)
        except (AttributeError, OSError, OverflowError, ValueError):
            pass  # not applied: the result's usable_cores says so, and the host warns


def read_job(stream) -> Job:
    """The job on `stream`, read by the one JSON rule (contracts.strict_json) into its protocol type; a job that
    is not one (invalid JSON, another protocol version, an unknown mode or field) stops the runner with a message
    the host shows."""
    try:
        return Job.from_json(strict_json.loads(stream.read()))
    except ProtocolError as error:
        raise SystemExit(f"runner job is not one of protocol {PROTOCOL_VERSION}: {error}") from None
    except ValueError as error:  # json.JSONDecodeError or strict_json.JSONRefused
        raise SystemExit(f"runner job is not valid JSON: {error}") from None


def write_result(result, result_path) -> None:
    """The result's JSON to `result_path` (written whole, then renamed), or to standard output without one."""
    if result_path is None:
        json.dump(result.as_json(), sys.stdout)
        return
    with open(result_path + ".partial", "w") as handle:
        json.dump(result.as_json(), handle)
    os.replace(result_path + ".partial", result_path)


def main(argv=None):
    """`runner.py [--result PATH] < job.json`: the result goes to PATH (written whole, then renamed), so that
    what onnxruntime or a library prints on standard output (ORT prints "EP Error ... Falling back" there)
    cannot corrupt it; without --result, to standard output (by hand)."""
    argv = sys.argv[1:] if argv is None else argv
    result_path = argv[argv.index("--result") + 1] if "--result" in argv else None
    job = read_job(sys.stdin)
    import onnxruntime

    pin_cores(job.pin_cores)
    result = dataclasses.replace(MODES[job.mode](job), onnxruntime=onnxruntime.__version__, pid=os.getpid(),
                                 usable_cores=target_environment.usable_cores())
    write_result(result, result_path)


if __name__ == "__main__":
    main()
