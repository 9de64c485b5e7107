"""Graph sets in another precision, made on the host from the exported float32 ones.

float16: onnxruntime's float16 conversion (onnxruntime.transformers.float16) with keep_io_types, so the graphs
still take and return float32 (ids, masks, hidden states, logits): the contract and the passage cache stay as
they are. Ops onnxruntime keeps in float32 for accuracy (its default block list) stay so. The converted set is
checked against float32 like any device (parity.py), at FLOAT16_TOLERANCE: half precision keeps 11 mantissa
bits, and across the layers logits move by up to a few hundredths.
"""

import json
import shutil
from pathlib import Path

from ..errors import ManifestError, RunnerError, first_line
from ..readers import read_json
from ..runtime.contract import GRAPHS

FLOAT16_TOLERANCE = 0.1


def convert_graph_set(source_dir: Path, out_dir: Path, dtype: str) -> Path:
    """out_dir holding source_dir's graphs converted to `dtype` and its manifest with `graph_dtype` added."""
    if dtype == "float32":
        return Path(source_dir)
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=False)
    for spec in GRAPHS.values():
        try:
            model = convert_float_to_float16(onnx.load(str(Path(source_dir) / spec.file_name)), keep_io_types=True)
        except Exception as error:  # the converter raises what onnx and its own checks raise
            shutil.rmtree(out_dir, ignore_errors=True)
            raise RunnerError(f"converting {spec.file_name} to float16 failed: {first_line(error)}",
                              "measure the float32 graphs (graph_dtype: float32)") from None
        onnx.save(model, str(out_dir / spec.file_name))
    manifest = read_json(Path(source_dir) / "manifest.json", "graph set manifest", ManifestError)
    manifest["graph_dtype"] = dtype
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out_dir
