"""The results document: one reader for every format_version deformer-bench has written, through the version map."""

import copy

import pytest

from deformer_bench.contracts.results import (RESULTS_FORMAT_VERSION, UPGRADES, ResultsDocument, ResultsFormatError)

MS = 1_000_000
PROFILE = {"name": "server-cpu", "device": "cpu"}


def format_1_document() -> dict:
    """Format 1: one timing process, its samples at the top of each batch, no machine state, no devices."""
    samples = {"unsplit": [30 * MS] * 5, "online": [10 * MS] * 5, "passage_precompute": [5 * MS] * 5}
    return {"format_version": 1, "environment": {"command": "deformer-bench"}, "profile": PROFILE, "note": "",
            "configs": [{"label": "m", "device": "cpu", "deformer": {"layer": 1},
                         "batches": [{"batch_size": 1, "samples_ns": samples, "load_s": 0.2}]}], "warnings": []}


def test_a_format_1_document_reads_as_one_process_of_the_current_format():
    document = ResultsDocument.from_json(format_1_document())
    assert document.format_version == RESULTS_FORMAT_VERSION and document.timing_processes == 1
    [batch] = document.configs[0]["batches"]
    [process] = batch["processes"]
    assert process["index"] == 0 and process["speedup_vs_unsplit"]["online"] == pytest.approx(3.0)
    assert batch["across_processes"]["count"] == 1
    assert batch["across_processes"]["speedup_vs_unsplit"]["online"]["max_deviation"] == 0
    assert document.machine_state is None and not document.headline["ok"]
    assert "results format 1" in document.headline["reasons"][0]
    # and what format 3 added: one device's profile, no devices or failures, the config's defaults
    assert document.profiles == {"cpu": PROFILE} and document.devices == [] and document.failures == []
    config = document.configs[0]
    assert (config["backend"], config["transport"], config["emulated"], config["parity"]) == (
        "onnxruntime", "local", False, None)


def test_every_version_has_one_step_to_the_next():
    assert sorted(UPGRADES) == list(range(1, RESULTS_FORMAT_VERSION))
    document = ResultsDocument.from_json(format_1_document())
    assert ResultsDocument.from_json(copy.deepcopy(document.as_json())) == document  # the current one as it is


@pytest.mark.parametrize("version", [0, RESULTS_FORMAT_VERSION + 1, "3", None])
def test_an_unknown_format_version_is_refused(version):
    with pytest.raises(ResultsFormatError, match=f"format_version {version!r}"):
        ResultsDocument.from_json({**format_1_document(), "format_version": version})


def test_a_document_of_another_shape_is_refused_not_a_traceback():
    with pytest.raises(ResultsFormatError, match="not a deformer-bench results document"):
        ResultsDocument.from_json([1, 2])
    broken = format_1_document()
    del broken["configs"][0]["batches"][0]["samples_ns"]
    with pytest.raises(ResultsFormatError, match="not a results document of format 1"):
        ResultsDocument.from_json(broken)
