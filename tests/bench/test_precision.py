"""float16 graph sets made from the exported float32 ones, and measured like any other."""

import json

import numpy as np
import onnx
import pytest

from deformer_bench.bench.precision import FLOAT16_TOLERANCE, convert_graph_set
from deformer_bench.bench.parity import compare, reference_outputs
from deformer_bench.bench.runner import make_inputs


def test_float16_graphs_keep_float32_inputs_and_outputs_and_agree_with_float32(tiny_graphs, tmp_path):
    converted = convert_graph_set(tiny_graphs, tmp_path / "fp16", "float16")
    upper = onnx.load(str(converted / "upper.onnx"))
    float_types = {init.data_type for init in upper.graph.initializer if init.data_type in (1, 10)}
    assert 10 in float_types  # weights are float16 (onnx type 10; layer norms may stay float32)
    assert {value.type.tensor_type.elem_type for value in upper.graph.input} <= {1, 7}  # float32 and int64 kept
    assert json.loads((converted / "manifest.json").read_text())["graph_dtype"] == "float16"
    inputs = make_inputs({"seed": 0, "batch_size": 1, "question_len": 8, "passage_len": 24, "vocab_size": 120,
                          "passage_token_type": 1})
    record = compare(reference_outputs(converted, inputs), reference_outputs(tiny_graphs, inputs), FLOAT16_TOLERANCE)
    assert record["passed"] and 0 < max(record["max_abs_diff"].values()) < FLOAT16_TOLERANCE
    assert convert_graph_set(tiny_graphs, tmp_path / "unused", "float32") == tiny_graphs


def test_a_differing_output_fails_the_comparison_by_name():
    reference = {"online_start_logits": np.zeros((1, 4), np.float32), "passage_hidden": np.zeros((1, 2, 3))}
    record = compare({"online_start_logits": np.full((1, 4), 0.5, np.float32)}, reference, 0.1)
    assert not record["passed"]
    assert record["problems"] == ["online_start_logits: max abs difference 0.5 > 0.1",
                                  "passage_hidden: shape None, expected [1, 2, 3]"]
    nan = compare({"passage_hidden": np.full((1, 2, 3), np.nan)}, {"passage_hidden": np.zeros((1, 2, 3))}, 0.1)
    assert not nan["passed"]  # NaN is never within tolerance
    # recorded as null, not as Infinity, which results.json's strict reader would refuse
    import json

    from deformer_bench.readers import parse_json

    assert nan["max_abs_diff"] == {"passage_hidden": None} and "difference nan" in nan["problems"][0]
    assert parse_json(json.dumps(nan), "parity record") == nan


@pytest.mark.parametrize("dtype", ["float16"])
def test_a_float16_profile_is_measured_and_recorded_as_such(tiny_graphs, tmp_path, dtype):
    import subprocess
    import sys

    profile = tmp_path / "p.yaml"
    profile.write_text(f"name: p\ndescription: d\ndevice: cpu\nintra_op_threads: 1\nbatch_sizes: [1]\n"
                       f"graph_dtype: {dtype}\n")
    completed = subprocess.run([sys.executable, "-m", "deformer_bench.cli.bench", "--graphs", str(tiny_graphs),
                                "--profile", str(profile), "--quick", "--quiet", "--output", str(tmp_path / "r")],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    [directory] = list((tmp_path / "r").iterdir())
    results = json.loads((directory / "results.json").read_text())
    [config] = results["configs"]
    assert config["precision"] == dtype and config["parity"]["tolerance"] == FLOAT16_TOLERANCE
    assert config["parity"]["passed"] and config["batches"]
    assert results["devices"][0]["precision"] == dtype


def test_int8_variants_are_checked_across_devices_to_a_quantization_step():
    from deformer_bench.bench.devices import DEVICES
    from deformer_bench.bench.plan import DevicePlan
    from deformer_bench.bench.run import INT8_DEVICE_TOLERANCE, BenchConfig, parity_tolerance
    from deformer_bench.profiles import load_profile

    plan = DevicePlan(DEVICES["arm"], load_profile("arm-emulated"))

    def config(variant, ort_parent="int8-arm64"):
        return BenchConfig("m", None, {"variants": {"ort": {"parent": ort_parent}}}, variant)

    assert parity_tolerance(config("float32"), plan) == DEVICES["arm"].parity_tolerance == 1e-4
    assert parity_tolerance(config("optimized"), plan) == 1e-4
    assert parity_tolerance(config("int8"), plan) == INT8_DEVICE_TOLERANCE
    assert parity_tolerance(config("ort"), plan) == INT8_DEVICE_TOLERANCE  # an int8 set in the ORT format
    assert parity_tolerance(config("ort", ort_parent="optimized"), plan) == 1e-4
