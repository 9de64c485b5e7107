#!/usr/bin/env python3
"""The PyTorch backend's runner: the same jobs as runner.py (probe, parity, timing, memory), measured on the
PyTorch DeFormer (model.py) on `cpu` or `cuda`, in fp32, fp16 or bf16 eager mode.

Many GPU deployments serve from PyTorch, and a machine with a GPU but no onnxruntime-gpu can still be measured
this way; on the CPU it cross-checks onnxruntime. It runs with the installed deformer_bench (it needs the model
code and torch), on the local target only, in a fresh process per job like runner.py, and writes its result to
`--result PATH`. Each call starts from ids on the host and ends with logits on the host (`.cpu()`, which also
waits for the GPU), as a server's request would; the online path's cached passage states stay on the device.
"""

import json
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):  # run as a script by its path: the installed package, not this folder
    sys.path[0:1] = []
from deformer_bench.bench import runner  # noqa: E402
from deformer_bench.runtime import target_environment  # noqa: E402

PROTOCOL_VERSION = runner.PROTOCOL_VERSION
DTYPES = ("float32", "float16", "bfloat16")


def build_deformer(job):
    """The DeFormer of the job's source (a model directory, or a known shape with seeded random weights), on
    the job's device and dtype, in eval mode: the same weights the host exported."""
    import torch

    from deformer_bench.model import Deformer, DeformerConfig, load_qa_model, random_model

    source = job["source"]
    if "arch" in source:
        qa_model, trained = random_model(source["arch"]), False
    else:
        qa_model, trained = load_qa_model(source["model_dir"])
    settings = job["deformer"]
    config = DeformerConfig(layer=settings["layer"], question_len=settings["question_len"],
                            passage_len=settings["passage_len"],
                            passage_position_offset=settings["passage_position_offset"])
    deformer = Deformer(qa_model, config, qa_head_trained=trained).eval()
    return deformer.to(device=job["device"], dtype=getattr(torch, job["dtype"]))


def torch_calls(deformer, inputs: dict, device: str, paths):
    """{path: no-argument call}; host numpy ids in, host float32 logits out; passage states cached on device."""
    import torch

    def to_device(name):
        return torch.from_numpy(inputs[name]).to(device)

    with torch.inference_mode():
        cache = deformer.lower_passage(to_device("passage_input_ids"), to_device("passage_attention_mask"))

    def unsplit():
        with torch.inference_mode():
            start, end = deformer.unsplit(to_device("input_ids"), to_device("attention_mask"),
                                          to_device("token_type_ids"))
            return start.float().cpu().numpy(), end.float().cpu().numpy()

    def online():
        with torch.inference_mode():
            question_mask = to_device("question_attention_mask")
            question_hidden = deformer.lower_question(to_device("question_input_ids"), question_mask)
            start, end = deformer.upper(question_hidden, question_mask, cache, to_device("passage_attention_mask"))
            return start.float().cpu().numpy(), end.float().cpu().numpy()

    def passage_precompute():
        with torch.inference_mode():
            hidden = deformer.lower_passage(to_device("passage_input_ids"), to_device("passage_attention_mask"))
            return hidden.float().cpu().numpy()

    calls = {"unsplit": unsplit, "online": online, "passage_precompute": passage_precompute}
    return {path: calls[path] for path in paths}


def torch_facts(device: str) -> dict:
    import torch

    facts = {"version": torch.__version__, "cuda_build": torch.version.cuda,
             "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        facts.update({"device_name": torch.cuda.get_device_name(0),
                      "device_count": torch.cuda.device_count(),
                      "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                      "tf32_cudnn": torch.backends.cudnn.allow_tf32})
    return facts


def run_probe(job):
    return {"environment": {**target_environment.describe_target(), "torch": torch_facts(job.get("device", "cpu"))}}


def set_threads(job):
    import torch

    threads = job["session"]["intra_op_threads"]
    if threads:
        torch.set_num_threads(threads)


def run_parity(job):
    set_threads(job)
    deformer = build_deformer(job)
    with np.load(job["inputs"]) as staged:
        inputs = {name: staged[name] for name in staged.files}
    calls = torch_calls(deformer, inputs, job["device"], runner.STANDARD_PATHS)
    wall_s, outputs = {}, {}
    for path, call in calls.items():
        start = time.perf_counter()
        value = call()
        wall_s[path] = time.perf_counter() - start
        if path == "passage_precompute":
            outputs["passage_hidden"] = value
        else:
            outputs[f"{path}_start_logits"], outputs[f"{path}_end_logits"] = value
    with open(job["outputs"] + ".partial", "wb") as handle:
        np.savez(handle, **outputs)
    os.replace(job["outputs"] + ".partial", job["outputs"])
    used = f"torch:{job['device']}:{job['dtype']}"
    return {"wall_s": wall_s, "outputs": job["outputs"], "providers_used": {"model": used},
            "provider_options_used": {}}


def run_timing(job):
    set_threads(job)
    thermal_before = target_environment.thermal_readings()
    load_start = time.perf_counter()
    deformer = build_deformer(job)
    load_s = time.perf_counter() - load_start
    calls = torch_calls(deformer, runner.make_inputs(job), job["device"], job["paths"])
    warmup, measure = job["warmup"], job["measure"]
    runner.interleave(calls, warmup["min_count"], warmup["min_time_s"], warmup["max_time_s"])
    samples, capped = runner.interleave(calls, measure["min_count"], measure["min_time_s"], measure["max_time_s"])
    return {"samples_ns": samples, "stopped_by_time_cap": capped, "load_s": load_s,
            "providers_used": {"model": f"torch:{job['device']}:{job['dtype']}"}, "provider_options_used": {},
            "thermal_before_c": thermal_before, "thermal_after_c": target_environment.thermal_readings()}


def run_memory(job):
    """Resident memory as runner.run_memory reads it; on a GPU also torch's own allocator figures (the peak
    after loading, reset, so it is the running's)."""
    import torch

    set_threads(job)
    deformer = build_deformer(job)
    on_gpu = job["device"] != "cpu"
    call = torch_calls(deformer, runner.make_inputs(job), job["device"], [job["path"]])[job["path"]]
    gpu_after_load = torch.cuda.memory_allocated() / 2**20 if on_gpu else None
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    load_peak_kb, _ = runner.peak_rss()
    baseline_kb, rss_source = runner.current_rss()
    peak_reset = runner.reset_peak_rss()
    for _ in range(job["iterations"]):
        call()
    peak_kb, peak_source = runner.peak_rss()
    return {"path": job["path"], "rss_after_load_mb": runner.megabytes(baseline_kb), "rss_source": rss_source,
            "load_peak_rss_mb": runner.megabytes(load_peak_kb), "peak_rss_mb": runner.megabytes(peak_kb),
            "peak_source": peak_source, "peak_excludes_loading": peak_reset and peak_source == "proc_vmhwm",
            "iterations": job["iterations"], "gpu_memory_after_load_mb": gpu_after_load,
            "gpu_memory_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None}


MODES = {"probe": run_probe, "parity": run_parity, "timing": run_timing, "memory": run_memory}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    result_path = argv[argv.index("--result") + 1]
    job = runner.read_job(sys.stdin)
    if job.get("protocol_version") != PROTOCOL_VERSION:
        raise SystemExit(f"torch runner speaks protocol {PROTOCOL_VERSION}, job has {job.get('protocol_version')!r}")
    import torch

    result = MODES[job["mode"]](job)
    result.update({"protocol_version": PROTOCOL_VERSION, "mode": job["mode"], "torch": torch.__version__,
                   "pid": os.getpid(), "usable_cores": target_environment.usable_cores()})
    with open(result_path + ".partial", "w") as handle:
        json.dump(result, handle)
    os.replace(result_path + ".partial", result_path)


if __name__ == "__main__":
    main()
