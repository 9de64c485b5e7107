"""End to end: `deformer-bench --device arm` over a real sshd on 127.0.0.1 whose Python is the emulated aarch64
one (make arm-emulator), and under the emulator directly. Stage, run, fetch, parity with this host, emulated:
true, no latency. Needs Debian's openssh-server and the emulator (`make test-system`): skipped without them
here, a failure in CI (CI=true), where .ci/run installs both."""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from deformer_bench.bench.devices import default_emulator_python
from deformer_bench.cli.bench import bench_main
from deformer_bench.cli.common import run_cli

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def require(condition: bool, what: str):
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI: .ci/run installs it (make test-system)")
    pytest.skip(f"{what} is missing (make test-system)")


@pytest.fixture(scope="module")
def emulator_python():
    python = default_emulator_python()
    require(Path(python).is_file(), "the ARM emulator")
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd of the test's own on a free port: own host key, one authorized client key, no password."""
    require(os.path.isfile(SSHD) and shutil.which("ssh-keygen") is not None, "OpenSSH's sshd")
    folder = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    # a forced command that greets first, as some boards' and phones' shells do on every command: what the
    # target prints besides the runner's files must never be taken for a path or a result
    greeting = 'command="echo Welcome to the board; eval \\"$SSH_ORIGINAL_COMMAND\\"" '
    (folder / "authorized_keys").write_text(greeting + (folder / "client_key.pub").read_text())
    port = free_port()
    (folder / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "StrictModes no", "UsePAM no",
        "PermitRootLogin prohibit-password", f"PidFile {folder / 'sshd.pid'}", ""]))
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"sshd did not start: {process.stderr.read().decode()[-500:]}")
            time.sleep(0.2)
    yield {"port": port, "identity_file": str(folder / "client_key"), "known_hosts": str(folder / "known_hosts"),
           "user": os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()}
    process.terminate()
    process.wait(timeout=10)


def bench(argv, capsys) -> tuple:
    code = run_cli(bench_main, [str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ssh_profile(tmp_path, sshd, python, remote_root) -> Path:
    """An arm profile whose target is the test's sshd; nothing in it says the remote Python is emulated."""
    profile = tmp_path / "arm-over-ssh.yaml"
    profile.write_text("\n".join([
        "name: arm-over-ssh", "description: the test's sshd", "device: arm", "intra_op_threads: 1",
        "batch_sizes: [1]", "target:", "  transport: ssh", "  host: 127.0.0.1", f"  port: {sshd['port']}",
        f"  user: {sshd['user']}", f"  identity_file: {sshd['identity_file']}", f"  python: {python}",
        f"  work_dir: {remote_root}", "  ssh_options: [StrictHostKeyChecking=accept-new, "
        f"'UserKnownHostsFile={sshd['known_hosts']}']", ""]))
    return profile


def only_result(output: Path) -> dict:
    [directory] = list(output.iterdir())
    return json.loads((directory / "results.json").read_text()), directory


def test_arm_over_ssh_stages_runs_fetches_and_cleans_up(tiny_graphs, tmp_path, capsys, sshd, emulator_python):
    remote_root = tmp_path / "remote"
    profile = ssh_profile(tmp_path, sshd, emulator_python, remote_root)
    code, out, err = bench(["--graphs", tiny_graphs, "--device", "arm", "--profile", profile, "--quick",
                            "--output", tmp_path / "r", "--quiet"], capsys)
    assert code == 0, err
    results, directory = only_result(tmp_path / "r")
    [device] = results["devices"]
    assert (device["transport"], device["emulated"], device["status"]) == ("ssh", True, "functional")
    assert device["target"] == f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}"
    assert device["environment"]["machine"] == "aarch64"  # read on the target, not on this host
    assert "Cortex-A76" in device["environment"]["cpu"]["model"]
    [config] = results["configs"]
    assert config["emulated"] is True and config["batches"] == []  # no latency from an emulator
    parity = config["parity"]
    assert parity["passed"] and max(parity["max_abs_diff"].values()) < 1e-4
    assert "emulated_wall_s" in parity and "wall_s" not in parity
    assert list(remote_root.iterdir()) == []  # the work directory was removed
    report = (directory / "report.md").read_text()
    assert "functional only (emulated)" in report and not (directory / "speedup_vs_ideal.png").exists()
    assert "arm: tiny-k1 k=1: functional check passed under emulation" in out


def test_the_emulator_target_checks_arm_without_ssh(tiny_graphs, tmp_path, capsys, emulator_python):
    code, out, err = bench(["--graphs", tiny_graphs, "--device", "arm", "--allow-emulation", "--quick",
                            "--output", tmp_path / "r", "--quiet"], capsys)
    assert code == 0, err
    results, _ = only_result(tmp_path / "r")
    assert results["profiles"]["arm"]["name"] == "arm-emulated+quick"
    [config] = results["configs"]
    assert (config["transport"], config["emulated"], config["batches"]) == ("emulator", True, [])
    assert config["parity"]["passed"]


def test_an_unreachable_arm_target_fails_that_device_only(tiny_graphs, tmp_path, capsys):
    code, out, err = bench(["--graphs", tiny_graphs, "--device", "cpu,arm", "--target",
                            f"ssh://nobody@127.0.0.1:{free_port()}", "--quick", "--output", tmp_path / "r",
                            "--quiet"], capsys)
    assert code == 3, err
    assert "arm: cannot reach ssh://nobody@127.0.0.1" in err and "Traceback" not in err
    results, _ = only_result(tmp_path / "r")
    assert [config["device"] for config in results["configs"]] == ["cpu"]
    assert results["configs"][0]["batches"]  # cpu was measured
    assert [(d["device"], d["status"]) for d in results["devices"]] == [("cpu", "measured"), ("arm", "failed")]
