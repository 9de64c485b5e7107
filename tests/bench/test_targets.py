import pytest

from deformer_bench.bench.targets import LocalProcessTarget, resolve_devices
from deformer_bench.errors import EXIT_FAILURE, DeviceError, RunnerError

JOB = {"mode": "timing"}


def test_cpu_resolves():
    assert [device.name for device in resolve_devices("cpu")] == ["cpu"]


@pytest.mark.parametrize("text, message", [("tpu", "unknown device 'tpu'"), ("cpu,cuda", "'cuda' cannot be"),
                                           ("", "no device"), ("arm", "'arm' cannot be"),
                                           ("cpu,cpu", "device 'cpu' given more than once"),
                                           (" cpu , cpu", "device 'cpu' given more than once")])
def test_bad_devices(text, message):
    with pytest.raises(DeviceError, match=message):
        resolve_devices(text)


def fake_python(tmp_path, body: str) -> str:
    """An executable standing in for the runner's interpreter."""
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def test_a_crashed_runner_is_a_runtime_failure_with_its_stderr(tmp_path):
    target = LocalProcessTarget(python=fake_python(tmp_path, "echo 'onnxruntime: Load model failed' >&2; exit 1"))
    with pytest.raises(RunnerError, match="exit code 1: onnxruntime: Load model failed") as caught:
        target.run_job(JOB)
    assert caught.value.exit_code == EXIT_FAILURE


def test_a_runner_past_its_timeout_is_a_runtime_failure(tmp_path):
    target = LocalProcessTarget(python=fake_python(tmp_path, "exec sleep 30"), timeout_s=0.5)
    with pytest.raises(RunnerError, match=r"ran past 0 s|ran past 1 s") as caught:
        target.run_job(JOB)
    assert caught.value.exit_code == EXIT_FAILURE


@pytest.mark.parametrize("written", ["not json", '{"mode": "memory"}', "[1, 2]", "", None])
def test_a_runner_without_its_json_result_is_a_runtime_failure(tmp_path, written):
    # the fake interpreter gets: runner.py --result PATH
    body = "cat > /dev/null" + ("" if written is None else f"; printf '%s' '{written}' > \"$3\"")
    target = LocalProcessTarget(python=fake_python(tmp_path, body))
    with pytest.raises(RunnerError, match="returned no timing result"):
        target.run_job(JOB)


def test_what_a_runner_prints_cannot_corrupt_its_result(tmp_path):
    """onnxruntime prints "EP Error ... Falling back" on standard output: the result travels in a file."""
    body = ("cat > /dev/null; echo 'EP Error: CUDA not found. Falling back to CPU'; "
            "printf '%s' '{\"mode\": \"timing\", \"samples_ns\": {}}' > \"$3\"")
    assert LocalProcessTarget(python=fake_python(tmp_path, body)).run_job(JOB)["mode"] == "timing"
