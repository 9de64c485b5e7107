"""A device's precision: float16 is an exported variant a profile names; the parity check's tolerances."""

import json

import numpy as np
import pytest

from deformer_bench.exporters.variants import TOLERANCES
from deformer_bench.runtime.parity import compare

FLOAT16_TOLERANCE = TOLERANCES["float16"]


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

    from deformer_bench.contracts.readers import parse_json

    assert nan["max_abs_diff"] == {"passage_hidden": None} and "difference nan" in nan["problems"][0]
    assert parse_json(json.dumps(nan), "parity record") == nan


@pytest.fixture(scope="module")
def tiny_graphs_float16(tiny_model_dir, tmp_path_factory):
    from deformer_bench.exporters.onnx_export import export_graph_set
    from deformer_bench.model import Deformer

    out = tmp_path_factory.mktemp("fp16") / "graphs"
    export_graph_set(Deformer.from_pretrained(tiny_model_dir, layer=1, question_len=8, passage_len=24), out,
                     progress=False, variants=("float16",))
    return out


def profile_naming(tmp_path, variant):
    profile = tmp_path / "p.yaml"
    profile.write_text(f"name: p\ndescription: d\ndevice: cpu\nintra_op_threads: 1\nbatch_sizes: [1]\n"
                       f"variant: {variant}\n")
    return profile


def bench(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "deformer_bench.cli.bench", *map(str, args), "--quick", "--quiet"],
                          capture_output=True, text=True, timeout=600)


def test_a_profile_naming_the_float16_variant_measures_it_and_records_its_precision(tiny_graphs_float16, tmp_path):
    completed = bench("--graphs", tiny_graphs_float16, "--profile", profile_naming(tmp_path, "float16"),
                      "--output", tmp_path / "r")
    assert completed.returncode == 0, completed.stderr
    [directory] = list((tmp_path / "r").iterdir())
    results = json.loads((directory / "results.json").read_text())
    [config] = results["configs"]
    assert config["variant"] == "float16" and config["label"].endswith("[float16]")
    assert config["precision"] == "float16" and config["parity"]["tolerance"] == FLOAT16_TOLERANCE
    assert config["parity"]["passed"] and config["batches"]
    assert "unsplit_float32" in config["batches"][0]["processes"][0]["samples_ns"]  # beside its float32 parent
    assert results["devices"][0]["precision"] == "float16"


def test_a_profile_naming_a_variant_the_graph_set_lacks_is_refused(tiny_graphs, tmp_path):
    completed = bench("--graphs", tiny_graphs, "--profile", profile_naming(tmp_path, "float16"),
                      "--output", tmp_path / "r")
    assert completed.returncode == 2 and "has no float16 variant" in completed.stderr, completed.stderr


def test_graph_dtype_is_retired_with_a_hint_naming_the_variant(tmp_path):
    from deformer_bench.contracts.errors import ProfileError
    from deformer_bench.profiles import load_profile

    profile = tmp_path / "p.yaml"
    profile.write_text("name: p\ndescription: d\ndevice: cpu\nintra_op_threads: 1\nbatch_sizes: [1]\n"
                       "graph_dtype: float16\n")
    with pytest.raises(ProfileError, match="graph_dtype is no longer a profile key") as caught:
        load_profile(str(profile))
    assert "variant: float16" in caught.value.hint


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
