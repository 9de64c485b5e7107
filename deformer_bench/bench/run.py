"""Benchmark orchestration: send runner jobs to each device's target, save one results JSON.

Per device: stage the runner on its target, probe the target (what it is, which providers it has: a device
without its provider is skipped), then per configuration (model, k): stage the graph set, check the device's
outputs against this host's CPU (parity; all an emulated target runs), and per batch size:
  * `processes` timing jobs (default 3), one after another, each a fresh process timing the three paths
    interleaved (paired samples); the spread of their figures says how far one process can be trusted;
  * one memory job per path: a fresh process that loads only that path's graphs;
  * the paper's operator-bytes metric and the FLOP ideal, computed here from graph and config.
Around it all, the machine state (load, other busy processes), so a figure from a busy machine is flagged.
"""

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..contracts.errors import ConfigError, ManifestError, RunnerError, TargetError, first_line
from ..contracts.graphs import BATCH, GRAPHS, HIDDEN, PASSAGE_LENGTH, QUESTION_LENGTH, SEQUENCE_LENGTH
from ..contracts.manifest import ManifestSections, load_graph_set
from ..contracts.protocol import CODEC_SERVED_PATH, PATH_GRAPHS, SERVED_PATH, STANDARD_PATHS, MemoryJob
from ..contracts.results import RESULTS_FILE, ResultsDocument
from ..environment import describe_environment
from ..files import new_results_folder, staged_directory
from ..runtime.parity import reference_outputs
from . import machine_state
from .flops import path_flops
from .memory import operator_bytes
from .parity import PARITY_BATCH, check_device, parity_inputs
from .plan import (DevicePlan, check_target_machine, job_fields, measured_paths, memory_paths, run_job, timing_job,
                   unavailable_reason)
from .summary import HEADLINE_PROCESSES, few_processes_warning, headline_check, summarise_batch

PATHS = STANDARD_PATHS
DEFAULT_PROCESSES = HEADLINE_PROCESSES
# Each timing process measures every config and batch size afresh (minutes each): a hundred is already days of
# work, and a count past it is a typo that would run until killed.
MAX_PROCESSES = 100


def check_process_count(processes) -> None:
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= MAX_PROCESSES:
        raise ConfigError(f"timing processes must be a whole number from 1 to {MAX_PROCESSES}, got {processes!r}",
                          f"e.g. --processes {DEFAULT_PROCESSES} (a headline figure needs {HEADLINE_PROCESSES})")


@dataclass(frozen=True)
class BenchConfig(ManifestSections):
    """One graph set to measure, as its manifest describes it (`model` and `deformer`: its typed sections)."""

    label: str
    graphs_dir: Path
    manifest: dict
    variant: str = "float32"  # exporters/variants.py; a variant is timed beside its float32 unsplit model
    float32_dir: Path = None  # the float32 graph set a variant was made from
    served_codec: object = None  # plan.ServedCodec: a learned codec's cache built with this graph set's lower_passage

    def with_variant(self, variant: str) -> "BenchConfig":
        """The same graph set's `variant` (a ManifestError where it was not exported)."""
        if variant == self.variant:
            return self
        exported = self.float32_dir or self.graphs_dir
        graph_set = load_graph_set(exported, variant)
        return BenchConfig(variant_label(self.label, variant), graph_set.directory, graph_set.manifest, variant,
                           exported)


def variant_label(label: str, variant: str) -> str:
    """A graph set's row label in the report: the model's, its variant named."""
    return label if variant == "float32" else f"{label} [{variant}]"


def measured_models(configs: list) -> str:
    """The models measured, without their variants: what the results folder is named for (the variants are
    the report's rows, not part of the folder's name)."""
    models = set()
    for config in configs:
        suffix = f" [{config.variant}]"
        models.add(config.label[:-len(suffix)] if config.label.endswith(suffix) else config.label)
    return "+".join(sorted(models))


def device_configs(configs: list, plan) -> list:
    """What a device measures: the configs, or where its profile names a variant (a GPU's float16), that variant of
    each one's graph set."""
    return configs if plan.profile.variant is None else [config.with_variant(plan.profile.variant)
                                                         for config in configs]


def graph_input_shapes(config: BenchConfig, batch: int) -> dict:
    """{graph: {input: concrete shape}} at full length, derived from the graphs' axis names."""
    deformer = config.deformer
    sizes = {BATCH: batch, QUESTION_LENGTH: deformer.question_len, PASSAGE_LENGTH: deformer.passage_len,
             SEQUENCE_LENGTH: deformer.question_len + deformer.passage_len, HIDDEN: config.model.hidden_size}
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
    """Operator bytes of one query (batch 1) on each path. The paper's metric is one of float32 operators: a
    variant gets its float32 parent's figure (int8 graphs' quantization operators defeat shape inference)."""
    shapes = graph_input_shapes(config, 1)
    graphs_dir = config.float32_dir if config.variant != "float32" else config.graphs_dir
    per_graph = {graph: graph_operator_bytes(graphs_dir / f"{graph}.onnx", shapes[graph]) for graph in shapes}
    result = {path: sum(per_graph[graph][0] for graph in graphs) for path, graphs in PATH_GRAPHS.items() if path in PATHS}
    result["unresolved_tensors"] = sum(unresolved for _, unresolved in per_graph.values())
    result["graphs"] = "float32"
    return result


def config_flops(config: BenchConfig) -> dict:
    model, deformer = config.model, config.deformer
    return path_flops(model.num_layers, deformer.layer, model.hidden_size, model.intermediate_size,
                      deformer.question_len, deformer.passage_len).to_dict()


def measure_batch(config: BenchConfig, plan, work, graphs: str, batch: int,
                  processes: int = DEFAULT_PROCESSES) -> dict:
    """`processes` fresh timing processes, then one memory process per path, all in the target's work directory."""
    cache = f"passage_cache_{graphs.replace('/', '_')}_b{batch}.npy"
    job = timing_job(config, plan, batch, graphs)
    # Every process computes the same passage states (same seed); the first one saves them for the memory jobs.
    timings = [run_job(work, dataclasses.replace(job, passage_cache_out=cache if index == 0 else None))
               for index in range(processes)]
    memory = {
        path: run_job(work, MemoryJob(**job_fields(config, plan, batch), graphs_dir=graphs, path=path,
                                      iterations=plan.profile.memory_iterations, passage_cache_in=cache))
        for path in memory_paths(plan)
    }
    case = f"{config.label} k={config.deformer.layer} batch {batch} on {plan.device.name}"
    record = summarise_batch(case, batch, timings, memory)
    record["usable_cores"] = timings[0].usable_cores
    record["thermal_c"] = [{"before": timing.thermal_before_c, "after": timing.thermal_after_c}
                           for timing in timings]
    return record


def _mb(value) -> str:
    return f"{value:.0f} MB" if value is not None else "n/a"


def _served(record: dict) -> str:
    speedups = record["across_processes"]["speedup_vs_unsplit"]
    served, codec = speedups.get(SERVED_PATH), speedups.get(CODEC_SERVED_PATH)
    return ((f", served from the memory-mapped cache {served['median']:.2f}x" if served else "")
            + (f", from the codec's cache (decoded) {codec['median']:.2f}x" if codec else ""))


def describe_batch(config: BenchConfig, device: str, record: dict, ideal: float) -> str:
    latency, pooled = record["latency"], record["speedup_vs_unsplit"]["online"]
    across = record["across_processes"]["speedup_vs_unsplit"]["online"]
    memory = record["memory"]
    return (f"{device}: {config.label} k={config.deformer.layer} batch {record['batch_size']}: "
            f"unsplit p50 {latency['unsplit']['p50_ms']:.2f} ms, online {latency['online']['p50_ms']:.2f} ms -> "
            f"{across['median']:.2f}x (processes {across['min']:.2f}..{across['max']:.2f}; pooled "
            f"{pooled['ratio']:.2f}x [{pooled['ci95_low']:.2f}, {pooled['ci95_high']:.2f}]) "
            f"(FLOP ideal {ideal:.2f}x){_served(record)}; peak RSS unsplit {_mb(memory['unsplit']['peak_rss_mb'])}, "
            f"online {_mb(memory['online']['peak_rss_mb'])}")


def config_record(config: BenchConfig, plan, operator_bytes_record: dict) -> dict:
    return {
        "label": config.label,
        "variant": config.variant,
        "device": plan.device.name,
        "backend": plan.backend,
        "precision": plan.precision(config.variant),
        "profile": plan.profile.name,
        "transport": plan.target.transport,
        "model": config.manifest["model"],
        "deformer": config.manifest["deformer"],
        "opset": config.manifest["opset"],
        "validation": config.manifest["validation"],
        "flops": config_flops(config),
        "operator_bytes": operator_bytes_record,
        "providers": {"asked": plan.provider_asked()},
        "served_codec": config.served_codec.record() if config.served_codec and plan.backend == "onnxruntime" else None,
        "batches": [],
        "failures": [],
    }


def measure_config(config: BenchConfig, plan, work, graphs: str, emulated: bool, reference: dict,
                   processes: int, operator_bytes_record: dict, failures: list) -> dict:
    """The parity check, then (not emulated, parity passed) every batch size; a failed batch is recorded and
    the next one measured."""
    record = {**config_record(config, plan, operator_bytes_record), "emulated": emulated}
    if emulated:  # nothing computed for speed or memory goes with an emulated record, not even the ideal
        record.pop("flops"), record.pop("operator_bytes")
    fields = job_fields(config, plan, PARITY_BATCH)
    case = f"{plan.device.name}: {config.label} k={config.deformer.layer}"
    try:
        record["parity"] = check_device(work, graphs, fields, measured_paths(plan), reference["outputs"],
                                        reference["inputs_name"], parity_tolerance(config, plan), emulated)
    except RunnerError as error:  # this config's check crashed: the next config is still checked
        record["parity"] = None
        record["failures"].append({"batch_size": PARITY_BATCH, "error": error.message})
        failures.append(f"{case}: functional check: {error.message}")
        tqdm.write(f"error: {failures[-1]}", file=sys.stderr)
        return record
    record["providers"]["used"] = sorted(set((record["parity"]["providers_used"] or {}).values()))
    if not record["parity"]["passed"]:
        failures.append(f"{case}: outputs differ from this host's CPU ({'; '.join(record['parity']['problems'])}); "
                        "not timed")
        tqdm.write(f"error: {failures[-1]}", file=sys.stderr)
        return record
    if emulated:
        tqdm.write(f"{case}: functional check passed under emulation (max abs difference "
                   f"{max(record['parity']['max_abs_diff'].values()):.2g}); no speed figures from an emulator")
        return record
    for batch in plan.profile.batch_sizes:
        try:
            batch_record = measure_batch(config, plan, work, graphs, batch, processes)
        except RunnerError as error:
            record["failures"].append({"batch_size": batch, "error": error.message})
            failures.append(f"{case} batch {batch}: {error.message}")
            tqdm.write(f"error: {failures[-1]}", file=sys.stderr)
            continue
        record["batches"].append(batch_record)
        batch_record["warnings"] += pinning_warnings(plan.target, batch_record, case)
        tqdm.write(describe_batch(config, plan.device.name, batch_record, record["flops"]["ideal_speedup"]))
        for warning in batch_record["warnings"]:
            tqdm.write(f"warning: {warning}", file=sys.stderr)
    return record


# int8 kernels differ between CPUs (x86 multiplies u8 by s8, ARM s8 by s8, rounding apart): the same int8
# graphs agree across devices to a quantization step, not to float32's 1e-4.
INT8_DEVICE_TOLERANCE = 0.1


def parity_tolerance(config: BenchConfig, plan) -> float:
    variant = config.variant
    if variant == "ort":
        variant = config.manifest["variants"]["ort"]["parent"] if "ort" in config.manifest.get("variants", {}) \
            else "float32"
    return max(plan.parity_tolerance(variant), INT8_DEVICE_TOLERANCE if variant.startswith("int8") else 0.0)


def pinning_warnings(target, batch_record: dict, case: str) -> list:
    """A profile's pin_cores that the target's OS did not apply (Android may refuse; a core may not exist)."""
    usable = batch_record.get("usable_cores")
    if not target.pin_cores or usable is None or sorted(usable) == sorted(set(target.pin_cores)):
        return []
    return [f"{case}: pin_cores {list(target.pin_cores)} not applied; the runner could use cores {usable}"]


def device_record(plan, status: str, reason: str = None) -> dict:
    """What results["devices"] says of one device: its plan, target, status and the target's environment."""
    target = plan.target
    return {"device": plan.device.name, "profile": plan.profile.name, "backend": plan.backend,
            "precision": plan.precision(), "target": target.describe() if target else None,
            "transport": target.transport if target else None, "emulated": target.emulated if target else None,
            "status": status, "reason": reason, "environment": plan.environment}


def measure_device(plan, configs: list, references: dict, processes: int, operator_bytes_records: dict,
                   failures: list) -> tuple:
    """(device record, config records) of one device; an unreachable target or a runner that cannot start fails
    this device only."""
    device, target = plan.device, plan.target
    record = device_record(plan, "failed")
    records = []
    try:
        with target.staged() as work:
            work.script = plan.runner_script()
            # the preflight's probe, where it ran (bench_main); a fresh one otherwise
            environment = plan.environment or run_job(work, plan.probe_job()).environment
            record["environment"] = environment
            record["emulated"] = emulated = target.emulated or environment["emulated"]
            record["reason"] = unavailable_reason(device, environment, plan.backend)
            if record["reason"]:
                record["status"] = "skipped"
                return record, records
            check_target_machine(device, target, environment)
            for index, config in enumerate(device_configs(configs, plan)):
                # the PyTorch backend builds its model from the source; only onnxruntime reads the graphs
                graphs = (work.put_graph_set(config.graphs_dir, f"config-{index}")
                          if plan.backend == "onnxruntime" else f"config-{index}")
                if config.variant != "float32" and plan.backend == "onnxruntime":
                    # the fair baseline: the float32 unsplit model, timed in the same rounds
                    plan.float32_graphs[graphs] = work.put_graph_set(config.float32_dir, f"config-{index}-float32")
                if config.served_codec is not None and plan.backend == "onnxruntime":
                    plan.served_codecs[graphs] = config.served_codec.stage(work, index)
                reference = references[config.graphs_dir]
                work.put_arrays(reference["inputs_name"], reference["inputs"])
                records.append(measure_config(config, plan, work, graphs, emulated, reference, processes,
                                              operator_bytes_records[config.graphs_dir], failures))
    except (TargetError, RunnerError) as error:
        record["reason"] = error.message
        failures.append(f"{device.name}: {error.message}")
        tqdm.write(f"error: {failures[-1]}", file=sys.stderr)
        return record, records
    record["status"] = "functional" if record["emulated"] else "measured"
    return record, records


def save_results(results: ResultsDocument, output_root: Path, model: str, write_beside=None) -> Path:
    """Write results.json, and what `write_beside(folder)` derives from it (the CLI's report.write_report), into a
    temporary directory, then rename it into place (a results root made for it and left empty by a failure is
    removed again: staged_directory)."""
    final = new_results_folder(output_root, results.profile["name"], model)
    with staged_directory(final) as staging:
        (staging / RESULTS_FILE).write_text(json.dumps(results.as_json(), indent=1) + "\n")
        if write_beside is not None:
            write_beside(staging)
    return final


def start_machine_state(take_snapshot=machine_state.snapshot) -> dict:
    """The machine before any export or measurement; a busy one is warned about now, not only at the end."""
    start = take_snapshot()
    for warning in machine_state.state_warnings(start, None, os.cpu_count() or 1):
        tqdm.write(f"warning: {warning}", file=sys.stderr)
    return start


def parity_references(configs: list, profile, device) -> dict:
    """{graph set folder: the host's reference outputs on its staged inputs}, computed once per graph set."""
    references = {}
    for index, config in enumerate(configs):
        inputs = parity_inputs(job_fields(config, DevicePlan(device, profile), PARITY_BATCH))
        references[config.graphs_dir] = {"inputs": inputs, "inputs_name": f"parity_inputs_{index}.npz",
                                         "outputs": reference_outputs(config.graphs_dir, inputs)}
    return references


def run_benchmark(configs: list, plans: list, command: list, note: str = "", progress: bool = True,
                  processes: int = DEFAULT_PROCESSES, machine_start: dict = None,
                  take_snapshot=machine_state.snapshot) -> ResultsDocument:
    """Measure every config on every device; returns the results document (not yet saved). A device that is
    skipped or fails is recorded as such; the others are measured."""
    check_process_count(processes)
    start = machine_start if machine_start is not None else start_machine_state(take_snapshot)
    primary = plans[0].profile
    results = ResultsDocument(environment=describe_environment(command), profile=primary.to_dict(),
                              profiles={plan.device.name: plan.profile.to_dict() for plan in plans},
                              note=note, timing_processes=processes)
    # Read every graph (the paper's memory metric) of every graph set a device measures before the first
    # measurement: a damaged graph of the last config is refused now, not after minutes of timing the others.
    measured_sets = list({config.graphs_dir: config for plan in plans
                          for config in device_configs(configs, plan)}.values())
    operator_bytes_records = {config.graphs_dir: paper_memory_metric(config) for config in measured_sets}
    references = parity_references(measured_sets, primary, plans[0].device)
    for plan in tqdm(plans, desc="bench", unit="device", disable=not progress or len(plans) == 1):
        if plan.error or plan.skipped:
            results.devices.append(device_record(plan, "failed" if plan.error else "skipped",
                                                 plan.error or plan.skipped))
            if plan.error:
                results.failures.append(f"{plan.device.name}: {plan.error}")
            continue
        measured, records = measure_device(plan, configs, references, processes, operator_bytes_records,
                                           results.failures)
        results.devices.append(measured)
        results.configs.extend(records)
        if measured["status"] == "skipped":  # found now, where no preflight probe ran
            tqdm.write(f"{plan.device.name}: skipped ({measured['reason']})")
    # the results are filed under the profile of the first device that ran, not of one skipped or failed
    ran = [record["device"] for record in results.devices if record["status"] in ("measured", "functional")]
    if ran:
        results.profile = results.profiles[ran[0]]
    state = machine_state.machine_state_record(start, take_snapshot())
    results.machine_state = state
    timed = [config for config in results.configs if config["batches"]]
    results.headline = headline_check(primary.name, processes, state, timed)
    # --quick says what it is in the headline; a full run with too few processes is warned about too
    few = None if primary.name.endswith("+quick") else few_processes_warning(processes)
    results.warnings = state["warnings"] + ([few] if few else []) + [
        warning for config in timed for batch in config["batches"] for warning in batch["warnings"]]
    return results
