"""The worker protocol: one type per job and per result, the same JSON on the wire for the host and both runners."""

import pytest

from deformer_bench.contracts.protocol import (PROTOCOL_VERSION, InputSpec, Job, MemoryJob, MemoryResult, ParityJob,
                                               ProbeJob, ProtocolError, Rounds, TimingJob, TimingResult, TorchModel)

INPUTS = InputSpec(batch_size=2, question_len=8, passage_len=24, passage_token_type=1, vocab_size=120, seed=3)
SESSION = {"provider": "CPUExecutionProvider", "intra_op_threads": 1}


@pytest.mark.parametrize("job", [
    ProbeJob(device="cuda"),
    TimingJob(inputs=INPUTS, session=SESSION, graphs_dir="graphs/k1", paths=("unsplit", "online"),
              warmup=Rounds(1, 0.0, 10.0), measure=Rounds(5, 1.0, 30.0), float32_graphs_dir="graphs/k1-float32",
              passage_cache_out="cache.npy", pin_cores=(2, 3)),
    MemoryJob(inputs=INPUTS, session=SESSION, graphs_dir="graphs/k1", path="online", iterations=2,
              passage_cache_in="cache.npy"),
    ParityJob(inputs=INPUTS, session=SESSION, graphs_dir="graphs/k1", inputs_file="in.npz", outputs_file="out.npz",
              torch_model=TorchModel(source={"arch": "minilm-l6"}, deformer={"layer": 1}, device="cpu",
                                     dtype="float16")),
])
def test_every_job_reads_back_as_itself_from_flat_json(job):
    wire = job.as_json()
    assert wire["protocol_version"] == PROTOCOL_VERSION and wire["mode"] == job.mode
    assert not any(isinstance(value, (InputSpec, Rounds, TorchModel)) for value in wire.values())
    assert Job.from_json(wire) == job


def test_a_timing_job_is_read_by_attribute_not_by_key():
    job = Job.from_json(TimingJob(inputs=INPUTS, warmup=Rounds(1, 0.0, 10.0), measure=Rounds(5, 1.0, 30.0)).as_json())
    assert job.warmup.min_count == 1 and job.measure.max_time_s == 30.0 and job.inputs.seed == 3


@pytest.mark.parametrize("change, message", [
    ({"protocol_version": 1}, "speaks protocol"),
    ({"mode": "train"}, "unknown mode 'train'"),
    ({"iterations_typo": 3}, "has no field 'iterations_typo'"),
])
def test_a_job_of_another_version_mode_or_shape_is_refused(change, message):
    wire = {**MemoryJob(inputs=INPUTS, path="online", iterations=2).as_json(), **change}
    with pytest.raises(ProtocolError, match=message):
        Job.from_json(wire)


def test_results_are_typed_and_refuse_fields_they_do_not_know():
    job = MemoryJob(inputs=INPUTS, path="online", iterations=2)
    result = job.read_result({"mode": "memory", "path": "online", "iterations": 2, "peak_rss_mb": 120.5, "pid": 7})
    assert isinstance(result, MemoryResult) and result.peak_rss_mb == 120.5 and result.rss_after_load_mb is None
    assert MemoryResult.from_json(result.as_json()) == result
    with pytest.raises(ProtocolError, match="has no field 'peak_rss'"):
        job.read_result({"mode": "memory", "path": "online", "iterations": 2, "peak_rss": 1})
    with pytest.raises(ProtocolError, match="unknown mode 'timing'"):
        job.read_result(TimingResult(samples_ns={"unsplit": [1]}).as_json())
