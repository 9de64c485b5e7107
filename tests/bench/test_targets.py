"""Targets (stage, run, fetch, remove) with stand-in interpreters, and where each device runs."""

import json
import os
import sys

import pytest

from deformer_bench.bench.devices import (DEVICES, check_target_settings, make_target, parse_ssh_url,
                                          resolve_devices)
from deformer_bench.bench.targets import STAGED_SOURCES, EmulatorTarget, SshTarget, Target, runner_bundle
from deformer_bench.errors import EXIT_FAILURE, DeviceError, RunnerError, TargetError

JOB = {"mode": "timing"}


def test_devices_resolve():
    assert [device.name for device in resolve_devices("cpu, cuda,arm")] == ["cpu", "cuda", "arm"]


@pytest.mark.parametrize("text, message", [("tpu", "unknown device 'tpu'"), ("", "no device"),
                                           ("cpu,cpu", "device 'cpu' given more than once"),
                                           (" cpu , cpu", "device 'cpu' given more than once")])
def test_bad_devices(text, message):
    with pytest.raises(DeviceError, match=message):
        resolve_devices(text)


def fake_python(tmp_path, body: str) -> str:
    """An executable standing in for the runner's interpreter (called as: python runner.py --result NAME)."""
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def run_one(target, job=JOB):
    with target.staged() as work:
        return work.run_job(job)


def test_the_runner_and_its_runtime_are_staged_and_removed_after(tmp_path):
    # the stand-in records its working directory and what was staged there, then writes a result
    body = ("cat > /dev/null; pwd > \"" + str(tmp_path / "where") + "\"; find . -type f | sort > \""
            + str(tmp_path / "staged") + "\"; printf '%s' '{\"mode\": \"timing\"}' > \"$3\"")
    target = Target(python=fake_python(tmp_path, body))
    assert run_one(target)["mode"] == "timing"
    work_dir = (tmp_path / "where").read_text().strip()
    assert not os.path.exists(work_dir)  # removed after the device was done
    assert (tmp_path / "staged").read_text().split() == sorted(f"./{name}" for name in STAGED_SOURCES)
    names = set(STAGED_SOURCES)
    assert {"runner.py", "deformer_bench/runtime/sessions.py", "deformer_bench/runtime/contract.py",
            "deformer_bench/runtime/target_environment.py"} <= names
    assert not any("torch" in path.read_text() and "import torch" in path.read_text()
                   for path in STAGED_SOURCES.values())
    assert len(runner_bundle()) > 10_000


def test_the_staged_runner_runs_with_only_the_runtime_package(tiny_graphs, tmp_path):
    """The real runner, staged: it imports nothing of deformer_bench but what was staged (no torch, no CLI)."""
    target = Target(timeout_s=120)
    job = {"protocol_version": 2, "mode": "probe"}
    with target.staged() as work:
        result = work.run_job(job)
        graphs = work.put_graph_set(tiny_graphs, "tiny")
        assert graphs == "graphs/tiny" and os.path.isfile(os.path.join(work.path, graphs, "full.onnx"))
    assert result["environment"]["onnxruntime"]["available_providers"]
    assert result["environment"]["emulated"] is False


def test_a_crashed_runner_is_a_runtime_failure_with_its_stderr(tmp_path):
    target = Target(python=fake_python(tmp_path, "echo 'onnxruntime: Load model failed' >&2; exit 1"))
    with pytest.raises(RunnerError, match="failed with exit code 1: onnxruntime: Load model failed") as caught:
        run_one(target)
    assert caught.value.exit_code == EXIT_FAILURE


def test_a_runner_killed_by_a_signal_says_so(tmp_path):
    target = Target(python=fake_python(tmp_path, "kill -9 $$"))
    with pytest.raises(RunnerError, match="was killed by signal 9 .killed: out of memory"):
        run_one(target)


def test_a_runner_past_its_timeout_is_a_runtime_failure(tmp_path):
    target = Target(python=fake_python(tmp_path, "exec sleep 30"), timeout_s=0.5)
    with pytest.raises(RunnerError, match=r"ran past 0 s|ran past 1 s") as caught:
        run_one(target)
    assert caught.value.exit_code == EXIT_FAILURE


@pytest.mark.parametrize("written", ["not json", '{"mode": "memory"}', "[1, 2]", "", None])
def test_a_runner_without_its_json_result_is_a_runtime_failure(tmp_path, written):
    body = "cat > /dev/null" + ("" if written is None else f"; printf '%s' '{written}' > \"$3\"")
    with pytest.raises(RunnerError, match="returned no timing result"):
        run_one(Target(python=fake_python(tmp_path, body)))


def test_what_a_runner_prints_cannot_corrupt_its_result(tmp_path):
    """onnxruntime prints "EP Error ... Falling back" on standard output: the result travels in a file."""
    body = ("cat > /dev/null; echo 'EP Error: CUDA not found. Falling back to CPU'; "
            "printf '%s' '{\"mode\": \"timing\", \"samples_ns\": {}}' > \"$3\"")
    assert run_one(Target(python=fake_python(tmp_path, body)))["mode"] == "timing"


def test_pinned_cores_travel_in_the_job(tmp_path):
    body = f"cat > \"{tmp_path / 'job.json'}\"; printf '%s' '{{\"mode\": \"timing\"}}' > \"$3\""
    run_one(Target(python=fake_python(tmp_path, body), pin_cores=(0,)))
    assert json.loads((tmp_path / "job.json").read_text())["pin_cores"] == [0]


# --- which target each device gets ---

def test_cpu_runs_on_this_machine_with_this_python():
    target = make_target(DEVICES["cpu"], {})
    assert type(target) is Target and target.python == sys.executable and target.transport == "local"


def test_arm_on_another_machine_needs_a_target_or_emulation():
    with pytest.raises(TargetError, match="this machine is x86_64, not an ARM one") as caught:
        make_target(DEVICES["arm"], {}, host_machine="x86_64")
    assert "--allow-emulation" in caught.value.hint and "--target ssh://" in caught.value.hint


def test_arm_on_an_arm_machine_runs_here():
    assert make_target(DEVICES["arm"], {}, host_machine="aarch64").transport == "local"


def test_emulation_must_exist_when_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFORMER_BENCH_ARM_EMULATOR", str(tmp_path / "missing" / "python3"))
    with pytest.raises(TargetError, match="emulator's Python .* does not exist") as caught:
        make_target(DEVICES["arm"], {}, allow_emulation=True, host_machine="x86_64")
    assert "make arm-emulator" in caught.value.hint
    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\n")
    monkeypatch.setenv("DEFORMER_BENCH_ARM_EMULATOR", str(python))
    target = make_target(DEVICES["arm"], {}, allow_emulation=True, host_machine="x86_64")
    assert isinstance(target, EmulatorTarget) and target.emulated and target.transport == "emulator"


def test_the_emulator_runs_arm_code_only():
    with pytest.raises(TargetError, match="emulator transport runs aarch64 code only"):
        make_target(DEVICES["cpu"], {"transport": "emulator"})


def test_an_ssh_target_from_the_command_line_keeps_the_profiles_other_settings():
    target = make_target(DEVICES["arm"], {"identity_file": "~/.ssh/pi", "cool_down_s": 5, "python": "py"},
                         target_url="ssh://pi@board.local:2222", host_machine="x86_64")
    assert isinstance(target, SshTarget)
    assert (target.host, target.port, target.user, target.cool_down_s) == ("board.local", 2222, "pi", 5)
    assert target.python == "python3"  # the profile's python was for its own target, not this one
    command = target.ssh_command("true")
    assert command[:3] == ["ssh", "-p", "2222"] and "BatchMode=yes" in command
    assert command[-5:] == ["-l", "pi", "--", "board.local", "true"]  # "--": a host is never read as an option
    assert os.path.expanduser("~/.ssh/pi") in command


@pytest.mark.parametrize("url", ["pi@board", "http://board", "ssh://", "ssh://pi@board:99999", "ssh://board/path",
                                 "ssh://h:0", "ssh://u@[::1", "ssh://h:abc", "ssh://-oProxyCommand=x@h",
                                 "ssh://-x"])
def test_bad_ssh_addresses_are_refused(url):
    with pytest.raises(TargetError, match="is not an ssh address|is not a host or user name"):
        parse_ssh_url(url)


def test_an_ssh_address_without_user_or_port():
    assert parse_ssh_url("ssh://board") == {"transport": "ssh", "host": "board"}


@pytest.mark.parametrize("settings, message", [
    ({"hots": "x"}, "unknown keys: hots"),
    ({"transport": "adb"}, "transport 'adb' is unknown"),
    ({"port": "22"}, "target.port has the wrong type"),
    ({"port": 0}, "is not a port number"),
    ({"pin_cores": [1, -2]}, "pin_cores must be a list of core numbers"),
    ({"cool_down_s": -1}, "cool_down_s must be from 0 to 3600 s"),
    ({"cool_down_s": float("inf")}, "cool_down_s must be from 0 to 3600 s"),  # issue 22, finding 14
    ({"cool_down_s": float("nan")}, "cool_down_s must be from 0 to 3600 s"),
    ({"ssh_options": [1]}, "ssh_options must be a list of strings"),
    ({"python": True}, "target.python has the wrong type"),
    ({"timeout_s": 0}, "timeout_s must be above 0 and at most 86400 s"),
    ({"timeout_s": 1e12}, "timeout_s must be above 0 and at most 86400 s"),
    ({"work_dir": "~/x"}, "is not an absolute path"),
    ({"work_dir": "tmp"}, "is not an absolute path"),
    ({"host": "-oProxyCommand=x"}, "is not a host or user name"),
    ({"pin_cores": [2 ** 63]}, "names a core above"),
    ([], "target must be a mapping"),
])
def test_bad_target_settings_are_refused(settings, message):
    with pytest.raises(TargetError, match=message):
        check_target_settings(settings, "profile 'p'")


def test_an_unreachable_ssh_host_is_one_clear_error(tmp_path):
    target = SshTarget(host="127.0.0.1", port=_free_port(), connect_timeout_s=5, timeout_s=30,
                       ssh_options=(f"UserKnownHostsFile={tmp_path / 'known_hosts'}",))
    with pytest.raises(TargetError, match=r"cannot reach ssh://127\.0\.0\.1:\d+: .*(refused|Connection)"):
        with target.staged():
            pass


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_ssh_profiles_python_is_kept_under_target_but_a_local_one_is_not():
    ssh_profile = {"transport": "ssh", "host": "a", "python": "/opt/venv/bin/python"}
    kept = make_target(DEVICES["arm"], ssh_profile, target_url="ssh://b", host_machine="x86_64")
    assert (kept.host, kept.python) == ("b", "/opt/venv/bin/python")
    local_profile = {"python": "/usr/bin/python3.11"}
    assert make_target(DEVICES["arm"], local_profile, target_url="ssh://b", host_machine="x86_64").python == "python3"


def test_a_relative_python_is_resolved_here_not_in_the_work_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert make_target(DEVICES["cpu"], {"python": "venv/bin/python"}).python == str(tmp_path / "venv/bin/python")
    assert make_target(DEVICES["cpu"], {"python": "python3"}).python == "python3"  # a name is looked up on PATH


def test_remote_output_before_the_marker_is_ignored():
    from deformer_bench.bench.targets import MARKER, after_marker, last_line

    assert after_marker(f"Welcome to the board\n{MARKER}\n/tmp/deformer-bench-x\n".encode()) == b"/tmp/deformer-bench-x\n"
    assert after_marker(b"no marker") is None
    assert last_line("Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module named 'x'\n") == \
        "ModuleNotFoundError: No module named 'x'"
    assert last_line("") == "no message on stderr"


def test_a_timed_out_remote_runner_is_stopped_without_matching_its_own_shell(monkeypatch):
    commands = []
    monkeypatch.setattr("subprocess.run", lambda command, **kwargs: commands.append(command))
    SshTarget(host="h").stop_runner("/tmp/deformer-bench-x", "runner.py")
    assert commands[0][-1] == "pkill -f '[/]tmp/deformer-bench-x/runner.py'"


def test_a_remote_side_that_fails_while_staging_is_one_error_for_that_device(tiny_graphs, monkeypatch):
    """The remote tar ends at once (a full disk): the pipe breaks under the local writer; one TargetError."""
    target = SshTarget(host="h")
    monkeypatch.setattr(target, "ssh_command",
                        lambda command: ["sh", "-c", "echo 'tar: graphs/full.onnx: No space left on device' >&2; exit 2"])
    with pytest.raises(TargetError, match="staging .* failed: tar: graphs/full.onnx: No space left on device"):
        target.put_tree("/tmp/deformer-bench-x", tiny_graphs, "graphs/config-0")
