"""Where runner jobs execute: one Target class per transport (local, emulator, ssh), behind one protocol.

A target stages what a job needs into a work directory of its own (the runner and the runtime package it
imports, the graph set, the inputs), runs each job there in a fresh Python process with paths relative to that
directory, fetches the result file, and removes the work directory when the device is done, also after a
failure. Nothing the host sends names a host path.

    with target.staged() as work:                 # runner + deformer_bench/contracts and runtime copied over
        graphs = work.put_graph_set(local_dir, "k4")   # -> "graphs/k4", relative to the work directory
        result = work.run_job({..., "graphs_dir": graphs})
"""

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contracts import strict_json
from ..contracts.errors import RunnerError, TargetError

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # deformer_bench/
RUNNER_SCRIPT = PACKAGE_DIR / "bench" / "runner.py"
# What the runner imports besides numpy and onnxruntime, staged under the same names: the two torch-free layers,
# the contracts (graphs, worker protocol, strict JSON) and the runtime (sessions, the machine read on the target).
STAGED_PACKAGES = ("contracts", "runtime")
STAGED_SOURCES = {"runner.py": RUNNER_SCRIPT, "deformer_bench/__init__.py": PACKAGE_DIR / "__init__.py",
                  **{f"deformer_bench/{package}/{path.name}": path for package in STAGED_PACKAGES
                     for path in sorted((PACKAGE_DIR / package).glob("*.py"))}}


def runner_bundle() -> bytes:
    """The runner and the runtime package as one tar archive (what every transport stages first)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, path in STAGED_SOURCES.items():
            archive.add(str(path), arcname=name)
    return buffer.getvalue()


def parse_result(job: dict, text: str) -> dict:
    """The runner's one JSON object (its result file); anything else (none, a cut-off write) is a RunnerError."""
    try:
        result = strict_json.loads(text)
    except strict_json.JSONRefused as refused:  # JSON to Python, not by the format: say what
        raise RunnerError(f"runner job ({job['mode']}) returned a result that is not valid JSON: {refused}",
                          "check the runner's onnxruntime installation") from None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict) or result.get("mode") != job["mode"]:
        raise RunnerError(f"runner job ({job['mode']}) returned no {job['mode']} result: {text[-200:]!r}",
                          "check the runner's onnxruntime installation")
    return result


def exit_description(returncode: int) -> str:
    if returncode < 0 or returncode == 137:
        signal_number = -returncode if returncode < 0 else 9
        cause = " (killed: out of memory, or by hand)" if signal_number == 9 else ""
        return f"was killed by signal {signal_number}{cause}"
    return f"failed with exit code {returncode}"


@dataclass
class Target:
    """A fresh process of `python` per job, in a work directory on this machine (the base transport)."""

    python: str = sys.executable
    timeout_s: float = 3600.0
    cool_down_s: float = 0.0  # pause before every job but the first (a phone or a board cools down)
    pin_cores: tuple = ()
    transport: str = field(default="local", init=False)
    emulated: bool = field(default=False, init=False)

    def describe(self) -> str:
        return f"local {self.python}"

    # --- transport primitives; other transports override these ---
    def make_work_dir(self) -> str:
        return tempfile.mkdtemp(prefix="deformer-target-")

    def remove_work_dir(self, work_dir: str) -> None:
        shutil.rmtree(work_dir, ignore_errors=True)

    def put_archive(self, work_dir: str, archive: bytes) -> None:
        with tarfile.open(fileobj=io.BytesIO(archive)) as bundle:
            bundle.extractall(work_dir, filter="data")

    def put_tree(self, work_dir: str, local_dir: Path, name: str) -> None:
        """A local target reads the graph set where it is: a link, not a copy of hundreds of MB."""
        destination = Path(work_dir) / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(Path(local_dir).resolve(), destination)

    def put_file(self, work_dir: str, local_file: Path, name: str) -> None:
        shutil.copyfile(local_file, Path(work_dir) / name)

    def execute(self, work_dir: str, arguments: list, stdin: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.python, *arguments], cwd=work_dir, input=stdin, capture_output=True, text=True,
                              timeout=self.timeout_s)

    def read_file(self, work_dir: str, name: str):
        """The bytes of a file in the work directory, None if it is not there."""
        try:
            return (Path(work_dir) / name).read_bytes()
        except OSError:
            return None

    @contextmanager
    def staged(self):
        """A work directory holding the runner; removed on the way out, whatever happened."""
        work_dir = self.make_work_dir()
        try:
            self.put_archive(work_dir, runner_bundle())
            yield WorkDirectory(self, work_dir)
        finally:
            self.remove_work_dir(work_dir)


class WorkDirectory:
    """One staged work directory on a target; every path a job names is relative to it."""

    def __init__(self, target: Target, work_dir: str, script: str = "runner.py"):
        # script: the staged runner, or the PyTorch backend's runner by its absolute path (local targets only)
        self.target, self.path, self.jobs_run, self.script = target, work_dir, 0, script

    def put_graph_set(self, local_dir: Path, name: str) -> str:
        relative = f"graphs/{name}"
        self.target.put_tree(self.path, Path(local_dir), relative)
        return relative

    def put_arrays(self, name: str, arrays: dict) -> str:
        with io.BytesIO() as buffer:
            np.savez(buffer, **arrays)
            return self.put_bytes(name, buffer.getvalue())

    def put_bytes(self, name: str, data: bytes) -> str:
        with tempfile.TemporaryDirectory(prefix="deformer-bytes-") as scratch:
            local = Path(scratch) / name
            local.write_bytes(data)
            self.target.put_file(self.path, local, name)
        return name

    def fetch_arrays(self, name: str) -> dict:
        data = self.target.read_file(self.path, name)
        if data is None:
            raise RunnerError(f"the runner wrote no {name} on {self.target.describe()}", "check the runner's stderr")
        with np.load(io.BytesIO(data)) as arrays:
            return {key: arrays[key] for key in arrays.files}

    def run_job(self, job: dict) -> dict:
        """One job in a fresh runner process; its result travels in a file of the work directory, not on
        standard output (where onnxruntime prints 'EP Error ... Falling back')."""
        if self.jobs_run and self.target.cool_down_s:
            time.sleep(self.target.cool_down_s)
        self.jobs_run += 1
        result_name = f"result-{self.jobs_run}.json"
        job = {**job, "pin_cores": list(self.target.pin_cores)} if self.target.pin_cores else job
        try:
            completed = self.target.execute(self.path, [self.script, "--result", result_name], json.dumps(job))
        except subprocess.TimeoutExpired:
            raise RunnerError(f"runner job ({job['mode']}) ran past {self.target.timeout_s:.0f} s on "
                              f"{self.target.describe()}", "lower max_time_s or the batch sizes in the profile, "
                              "or raise the target's timeout_s") from None
        except OSError as error:  # the target's Python itself cannot be started
            raise TargetError(f"cannot start {self.target.python} for {self.target.describe()}: "
                              f"{error.strerror or error}", "check target.python in the profile") from None
        if completed.returncode != 0:
            hint = ("the target's Python could not run the runner: it needs numpy and onnxruntime (torch for "
                    "--backend torch); check target.python, or rebuild the emulator (make arm-emulator)"
                    if job["mode"] == "probe" else "check the graphs and the runner's onnxruntime installation")
            raise RunnerError(f"runner job ({job['mode']}) on {self.target.describe()} "
                              f"{exit_description(completed.returncode)}: {last_line(completed.stderr)}", hint)
        data = self.target.read_file(self.path, result_name)
        return parse_result(job, data.decode("utf-8", "replace") if data is not None else "")


@dataclass
class EmulatorTarget(Target):
    """An aarch64 Python under qemu-user on this machine (make arm-emulator): functional checks only."""

    def __post_init__(self):
        self.transport, self.emulated = "emulator", True
        if not Path(self.python).is_file():
            raise TargetError(f"the ARM emulator's Python {self.python} does not exist",
                              "build it with `make arm-emulator` (qemu-user and an aarch64 sysroot), or set "
                              "target.python in the profile")

    def describe(self) -> str:
        return f"emulator {self.python}"


# Printed before what a remote command prints, so that a login banner or a forced command's greeting (some
# boards and phones print one for every command) is never taken for a path or a result.
MARKER = "--deformer-bench--"


def after_marker(output: bytes):
    """What a remote command printed after MARKER; None if the marker never came."""
    index = output.find(MARKER.encode() + b"\n")
    return output[index + len(MARKER) + 1:] if index >= 0 else None


@dataclass
class SshTarget(Target):
    """A remote machine over OpenSSH (a board, a phone with Python, a Graviton server): staged with tar, run
    with `ssh host 'cd WORK && python WORK/runner.py'`, the result read back with `cat`."""

    host: str = ""
    port: int = 22
    user: str = ""
    identity_file: str = ""
    work_root: str = "/tmp"
    ssh_options: tuple = ()
    connect_timeout_s: int = 15
    python: str = "python3"

    def __post_init__(self):
        self.transport = "ssh"
        if not self.host:
            raise TargetError("an ssh target needs a host", "give --target ssh://user@host:port or target.host")
        if shutil.which("ssh") is None:
            raise TargetError("the ssh command is not installed", "install OpenSSH's client (Debian: openssh-client)")

    def describe(self) -> str:
        return f"ssh://{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def ssh_command(self, remote_command: str) -> list:
        command = ["ssh", "-p", str(self.port), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}"]
        if self.identity_file:
            command += ["-i", os.path.expanduser(self.identity_file), "-o", "IdentitiesOnly=yes"]
        for option in self.ssh_options:
            command += ["-o", option]
        if self.user:
            command += ["-l", self.user]
        return command + ["--", self.host, remote_command]

    def ssh(self, remote_command: str, stdin=None, timeout=None) -> subprocess.CompletedProcess:
        """Run a remote command (bytes in and out); ssh's own failure (exit 255) is a TargetError."""
        try:
            completed = subprocess.run(self.ssh_command(remote_command), input=stdin, capture_output=True,
                                       timeout=timeout or self.timeout_s)
        except subprocess.TimeoutExpired:
            raise TargetError(f"{self.describe()} did not answer within {timeout or self.timeout_s:.0f} s",
                              "check that the host is up") from None
        if completed.returncode == 255:  # ssh's own failure: unreachable, refused, authentication
            raise TargetError(f"cannot reach {self.describe()}: {last_line(completed.stderr)}",
                              "check host, port, user and identity file (ssh must log in without a password)")
        return completed

    def _checked(self, remote_command: str, what: str, **kwargs) -> subprocess.CompletedProcess:
        completed = self.ssh(remote_command, **kwargs)
        if completed.returncode != 0:
            raise TargetError(f"{what} on {self.describe()} failed: {last_line(completed.stderr)}",
                              "check the target's work directory (target.work_dir) and its free space")
        return completed

    def make_work_dir(self) -> str:
        root = shlex.quote(self.work_root)
        completed = self._checked(f"mkdir -p {root} && printf '%s\\n' {MARKER} && mktemp -d {root}/deformer-bench-XXXXXXXX",
                                  "creating a work directory", timeout=self.connect_timeout_s * 4)
        path = (after_marker(completed.stdout) or b"").decode("utf-8", "replace").strip()
        if not path.startswith(self.work_root.rstrip("/") + "/deformer-bench-"):
            raise TargetError(f"creating a work directory on {self.describe()} gave no path ({path[-200:]!r})",
                              "check that target.work_dir can be written there")
        return path

    def remove_work_dir(self, work_dir: str) -> None:
        try:
            self.ssh(f"rm -rf {shlex.quote(work_dir)}", timeout=self.connect_timeout_s * 4)
        except TargetError as error:
            print(f"warning: could not remove {work_dir} on {self.describe()}: {error.message}", file=sys.stderr)

    def put_archive(self, work_dir: str, archive: bytes) -> None:
        self._checked(f"tar -xf - -C {shlex.quote(work_dir)}", "unpacking the runner", stdin=archive)

    def put_tree(self, work_dir: str, local_dir: Path, name: str) -> None:
        """The graph set streamed as a tar archive (no local copy of the whole set is made first)."""
        remote = shlex.quote(f"{work_dir}/{name}")
        process = subprocess.Popen(self.ssh_command(f"mkdir -p {remote} && tar -xf - -C {remote}"),
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            with tarfile.open(fileobj=process.stdin, mode="w|") as archive:
                for path in sorted(Path(local_dir).iterdir()):
                    if path.is_file():
                        archive.add(str(path), arcname=path.name)
        except BrokenPipeError:
            pass  # the remote side ended early: its exit code and stderr say why
        finally:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass
        stderr = process.stderr.read()
        returncode = process.wait()
        if returncode != 0:
            raise TargetError(f"staging {local_dir} on {self.describe()} failed: {last_line(stderr)}",
                              "check the target's free space and work directory (target.work_dir)")

    def put_file(self, work_dir: str, local_file: Path, name: str) -> None:
        self._checked(f"cat > {shlex.quote(f'{work_dir}/{name}')}", f"staging {name}",
                      stdin=Path(local_file).read_bytes())

    def execute(self, work_dir: str, arguments: list, stdin: str) -> subprocess.CompletedProcess:
        # the runner by its absolute path, so that a runner left running can be found by it
        script, *rest = arguments
        remote = (f"cd {shlex.quote(work_dir)} && exec {shlex.quote(self.python)} "
                  f"{shlex.join([f'{work_dir}/{script}', *rest])}")
        try:
            return subprocess.run(self.ssh_command(remote), input=stdin, capture_output=True, text=True,
                                  timeout=self.timeout_s)
        except BaseException:  # a timeout or Ctrl-C: the remote runner would go on timing on its own
            self.stop_runner(work_dir, script)
            raise

    def stop_runner(self, work_dir: str, script: str) -> None:
        """Best effort: end the runner left on the target (the pattern's bracket keeps pkill from matching the
        shell that runs it)."""
        path = f"{work_dir}/{script}"
        pattern = f"[{path[0]}]{path[1:]}"
        try:
            subprocess.run(self.ssh_command(f"pkill -f {shlex.quote(pattern)}"), capture_output=True,
                           timeout=self.connect_timeout_s * 2)
        except (OSError, subprocess.SubprocessError):
            pass

    def read_file(self, work_dir: str, name: str):
        completed = self.ssh(f"printf '%s\\n' {MARKER} && cat {shlex.quote(f'{work_dir}/{name}')}")
        return after_marker(completed.stdout) if completed.returncode == 0 else None


def last_line(stderr) -> str:
    """The last non-empty line of a process's stderr (a remote traceback ends with its error)."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message on stderr"
