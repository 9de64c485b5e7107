"""Where runner jobs execute. One Target class per transport, one Device entry per device; each registered once."""

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from ..errors import DeviceError, RunnerError

RUNNER_SCRIPT = Path(__file__).resolve().parent / "runner.py"


class Target(Protocol):
    def run_job(self, job: dict) -> dict:
        """Run one job in a fresh runner process and return its JSON result."""


@dataclass(frozen=True)
class LocalProcessTarget:
    """A fresh Python process on this machine per job."""

    python: str = sys.executable
    timeout_s: float = 3600.0

    def run_job(self, job: dict) -> dict:
        with tempfile.TemporaryDirectory(prefix="deformer-runner-") as scratch:
            result_path = Path(scratch) / "result.json"
            try:
                completed = subprocess.run([self.python, str(RUNNER_SCRIPT), "--result", str(result_path)],
                                           input=json.dumps(job), capture_output=True, text=True,
                                           timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                raise RunnerError(f"runner job ({job['mode']}) ran past {self.timeout_s:.0f} s",
                                  "lower max_time_s or the batch sizes in the profile") from None
            if completed.returncode != 0:
                tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
                raise RunnerError(f"runner job ({job['mode']}) failed with exit code {completed.returncode}: {tail}",
                                  "check the graphs and the runner's onnxruntime installation")
            text = result_path.read_text() if result_path.is_file() else ""
        return parse_result(job, text)


def parse_result(job: dict, text: str) -> dict:
    """The runner's one JSON object (its result file); anything else (none, a cut-off write) is a RunnerError."""
    try:
        result = json.loads(text)
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict) or result.get("mode") != job["mode"]:
        raise RunnerError(f"runner job ({job['mode']}) returned no {job['mode']} result: {text[-200:]!r}",
                          "check the runner's onnxruntime installation")
    return result


@dataclass(frozen=True)
class Device:
    name: str
    provider: str  # ONNX Runtime execution provider
    make_target: Callable[[], Target]


DEVICES = {
    "cpu": Device("cpu", "CPUExecutionProvider", LocalProcessTarget),
}
# Devices the product will have, not yet built: named so that asking for one gives a clear answer.
PLANNED_DEVICES = {
    "cuda": "the CUDA runner is not built yet (ONNX Runtime CUDA provider on a GPU machine)",
    "arm": "the ARM runner is not built yet (ssh/adb target on an aarch64 device)",
}


def resolve_devices(text: str) -> list:
    """'cpu,cuda' -> [Device, ...]; unknown, unavailable or repeated devices raise DeviceError."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise DeviceError("no device given", f"use --device with one of: {', '.join(DEVICES)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DeviceError(f"device {', '.join(map(repr, repeated))} given more than once in --device {text!r}",
                          "name each device once, e.g. --device cpu")
    devices = []
    for name in names:
        if name in DEVICES:
            devices.append(DEVICES[name])
        elif name in PLANNED_DEVICES:
            raise DeviceError(f"device {name!r} cannot be benchmarked: {PLANNED_DEVICES[name]}",
                              f"use --device {','.join(DEVICES)}")
        else:
            raise DeviceError(f"unknown device {name!r}",
                              f"use one of: {', '.join(DEVICES)} (planned: {', '.join(PLANNED_DEVICES)})")
    return devices
