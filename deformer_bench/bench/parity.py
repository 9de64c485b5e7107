"""The functional check of a device: its outputs against this host's CPU on the same staged inputs.

Every device runs it before any timing (a device whose outputs differ would be timed computing something else);
on an emulated target it is the only thing run. The host computes its reference in this process with
onnxruntime's CPU provider, once per graph set.
"""

import numpy as np

from ..runtime.sessions import GraphSetSessions
from .runner import PROTOCOL_VERSION, make_inputs, path_call

INPUTS_FILE = "parity_inputs.npz"
PARITY_BATCH = 1
INPUT_NAMES = ("question_input_ids", "question_attention_mask", "passage_input_ids", "passage_attention_mask",
               "input_ids", "attention_mask", "token_type_ids")


def parity_inputs(base_job: dict) -> dict:
    """Batch-1 full-length inputs, made on the host and staged as a file: the target need not reproduce the
    host's random numbers (its numpy may be another version)."""
    inputs = make_inputs({**base_job, "batch_size": PARITY_BATCH})
    return {name: inputs[name] for name in INPUT_NAMES}


def reference_outputs(graphs_dir, inputs: dict) -> dict:
    """What runner.run_parity computes, here on the host CPU."""
    graph_set = GraphSetSessions(graphs_dir, settings={"provider": "CPUExecutionProvider"})
    outputs = {"passage_hidden": graph_set.lower_passage(inputs["passage_input_ids"], inputs["passage_attention_mask"])}
    for path in ("unsplit", "online"):
        start, end = path_call(path, graph_set, inputs, outputs["passage_hidden"])()
        outputs[f"{path}_start_logits"], outputs[f"{path}_end_logits"] = start, end
    return outputs


def compare(outputs: dict, reference: dict, tolerance: float) -> dict:
    """{max_abs_diff: {output: value}, passed, problems}; a missing output or another shape fails."""
    differences, problems = {}, []
    for name, expected in reference.items():
        got = outputs.get(name)
        if got is None or np.shape(got) != np.shape(expected):
            problems.append(f"{name}: shape {None if got is None else list(np.shape(got))}, expected "
                            f"{list(np.shape(expected))}")
            continue
        difference = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - expected)))
        # JSON has no inf or NaN (results.json is read by the strict reader): null, and the problem says which
        differences[name] = difference if np.isfinite(difference) else None
        if not difference <= tolerance:  # NaN is never within tolerance
            problems.append(f"{name}: max abs difference {difference:.3g} > {tolerance:g}")
    return {"max_abs_diff": differences, "tolerance": tolerance, "passed": not problems, "problems": problems}


def check_device(work, graphs: str, base_job: dict, reference: dict, inputs_name: str, tolerance: float,
                 emulated: bool) -> dict:
    """Run the parity job on a staged work directory and compare; wall times named for what they are."""
    result = work.run_job({**base_job, "protocol_version": PROTOCOL_VERSION, "mode": "parity", "graphs_dir": graphs,
                           "inputs": inputs_name, "outputs": f"parity_outputs_{graphs.replace('/', '_')}.npz"})
    outputs = work.fetch_arrays(result["outputs"])
    # every other online path (cuda's online_device_io) must give what online gives on this host
    for path in sorted({name.rsplit("_start_logits", 1)[0] for name in outputs if name.endswith("_start_logits")}
                       - {"unsplit", "online"}):
        for end in ("start_logits", "end_logits"):
            reference = {**reference, f"{path}_{end}": reference[f"online_{end}"]}
    record = compare(outputs, reference, tolerance)
    record["reference"] = "this host's CPU (onnxruntime CPUExecutionProvider), same inputs"
    record["emulated_wall_s" if emulated else "wall_s"] = result["wall_s"]
    record["providers_used"] = result.get("providers_used")
    record["provider_options_used"] = result.get("provider_options_used")
    return record
