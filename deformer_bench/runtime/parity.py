"""Outputs of two graph sets (or two machines) compared on the same inputs: how a device is checked against this
host's CPU (bench/parity.py) and an exported variant against its float32 graphs (exporters/variants.py)."""

import numpy as np

from .paths import path_call
from .sessions import GraphSetSessions


def reference_outputs(graphs_dir, inputs: dict) -> dict:
    """passage_hidden and the unsplit and online logits of a graph set on `inputs`, on this host's CPU (what
    runner.run_parity computes on a target)."""
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
