"""What a result was measured on: machine, versions, git commit, command."""

import datetime
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import psutil

from .runtime import target_environment

PACKAGES = ("deformer-bench", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime",
            "numpy", "pandas")
CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
                         "asimd", "sve")


def cpu_info() -> dict:
    """This host's CPU, read by the one /proc/cpuinfo parser (runtime.target_environment, which the runner uses on a
    measured machine), with the flags that matter to ONNX Runtime's kernels."""
    text = target_environment.read_cpuinfo()
    flags = target_environment.cpu_features(text)
    return {
        "model": target_environment.cpu_model(text),
        "flags": [flag for flag in CPU_FLAGS_OF_INTEREST if flag in flags],
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def git_state() -> dict:
    """The checkout's commit now, and whether tracked files differ from it (new untracked files, results, do not)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None,
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


_first_git_state = None  # this process's first look at the checkout: the code it imported


def git_commit() -> dict:
    """The commit of the code this process runs: the checkout as this process first saw it, not as it is now. A
    long process (a training queue runs for hours) keeps the code it imported while commits land beside it; when
    the checkout has moved since, "checkout_now" says to what, so the record does not claim code that never ran."""
    global _first_git_state
    now = git_state()
    if now["commit"] is None:  # git failed or timed out (a loaded machine): nothing to compare or to keep
        return dict(_first_git_state or now)
    if _first_git_state is None:
        _first_git_state = now
    if now == _first_git_state:
        return dict(now)
    return {**_first_git_state, "checkout_now": now}


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def describe_environment(command: list) -> dict:
    return {
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpu": cpu_info(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git": git_commit(),
        "command": " ".join(command),
        "executable": sys.executable,
    }
