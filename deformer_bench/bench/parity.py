"""The functional check of a device: its outputs against this host's CPU on the same staged inputs.

Every device runs it before any timing (a device whose outputs differ would be timed computing something else);
on an emulated target it is the only thing run. The host computes its reference in this process with
onnxruntime's CPU provider, once per graph set (runtime.parity).
"""

import dataclasses

from ..contracts.protocol import ParityJob
from ..runtime.parity import compare
from ..runtime.paths import make_inputs
from .plan import run_job

PARITY_BATCH = 1
INPUT_NAMES = ("question_input_ids", "question_attention_mask", "passage_input_ids", "passage_attention_mask",
               "input_ids", "attention_mask", "token_type_ids")


def parity_inputs(fields: dict) -> dict:
    """Batch-1 full-length inputs (of `fields`, plan.job_fields), made on the host and staged as a file: the
    target need not reproduce the host's random numbers (its numpy may be another version)."""
    inputs = make_inputs(dataclasses.replace(fields["inputs"], batch_size=PARITY_BATCH))
    return {name: inputs[name] for name in INPUT_NAMES}


def check_device(work, graphs: str, fields: dict, paths, reference: dict, inputs_name: str, tolerance: float,
                 emulated: bool) -> dict:
    """Run the parity job on a staged work directory and compare; wall times named for what they are."""
    job = ParityJob(**fields, graphs_dir=graphs, paths=tuple(paths), inputs_file=inputs_name,
                    outputs_file=f"parity_outputs_{graphs.replace('/', '_')}.npz")
    result = run_job(work, job)
    outputs = work.fetch_arrays(result.outputs_file)
    # every other online path (cuda's online_device_io) must give what online gives on this host
    for path in sorted({name.rsplit("_start_logits", 1)[0] for name in outputs if name.endswith("_start_logits")}
                       - {"unsplit", "online"}):
        for end in ("start_logits", "end_logits"):
            reference = {**reference, f"{path}_{end}": reference[f"online_{end}"]}
    record = compare(outputs, reference, tolerance)
    record["reference"] = "this host's CPU (onnxruntime CPUExecutionProvider), same inputs"
    record["emulated_wall_s" if emulated else "wall_s"] = result.wall_s
    record["providers_used"] = result.providers_used
    record["provider_options_used"] = result.provider_options_used
    return record
