"""The devices deformer-bench measures, each registered once, and the target each one runs on.

    cpu   ONNX Runtime's CPU provider on this machine (or on the Python a profile names)
    cuda  ONNX Runtime's CUDA provider; skipped, with one line, where there is no GPU or no provider
    arm   an aarch64 CPU: this machine if it is one, a remote one over ssh (--target or a profile), or, only
          when asked (--allow-emulation, or the arm-emulated profile), an emulated one that proves the graphs
          run and agree, and never yields a speed or memory figure
"""

import os
import platform
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeviceError, TargetError
from .targets import EmulatorTarget, SshTarget, Target

PACKAGE_DIR = Path(__file__).resolve().parent.parent
EMULATOR_VARIABLE = "DEFORMER_BENCH_ARM_EMULATOR"  # the emulated Python, where it is not in ./.arm-emulator
ARM_MACHINES = ("aarch64", "arm64")
TRANSPORTS = ("local", "ssh", "emulator")
MAX_CORE = 4095
# Keys of a profile's `target:` mapping, with their types.
MAX_COOL_DOWN_S = 3600.0  # a pause between jobs
MAX_TIMEOUT_S = 86400.0  # one runner job: a day
TARGET_KEYS = {"transport": str, "python": str, "host": str, "port": int, "user": str, "identity_file": str,
               "work_dir": str, "ssh_options": list, "cool_down_s": (int, float), "pin_cores": list,
               "timeout_s": (int, float)}


@dataclass(frozen=True)
class Device:
    name: str
    provider: str  # the ONNX Runtime execution provider every session must really use
    default_profile: str
    parity_tolerance: float  # max abs difference of logits and passage states from this host's CPU
    extra_paths: tuple = ()  # measured besides unsplit, online and passage_precompute


DEVICES = {device.name: device for device in (
    Device("cpu", "CPUExecutionProvider", "server-cpu", 1e-4),
    # TF32 matmuls (ORT's CUDA default on Ampere and newer) round to 10-bit mantissas: logits move ~1e-3.
    Device("cuda", "CUDAExecutionProvider", "gpu-cuda", 2e-2, ("online_device_io",)),
    Device("arm", "CPUExecutionProvider", "arm-mobile", 1e-4),
)}


def resolve_devices(text: str) -> list:
    """'cpu,cuda' -> [Device, ...]; unknown or repeated devices raise DeviceError."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise DeviceError("no device given", f"use --device with one or more of: {', '.join(DEVICES)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DeviceError(f"device {', '.join(map(repr, repeated))} given more than once in --device {text!r}",
                          "name each device once, e.g. --device cpu,arm")
    unknown = [name for name in names if name not in DEVICES]
    if unknown:
        raise DeviceError(f"unknown device {unknown[0]!r}", f"use one or more of: {', '.join(DEVICES)}")
    return [DEVICES[name] for name in names]


def check_target_settings(settings, where: str) -> dict:
    """A profile's `target:` mapping, checked key by key (raises TargetError naming the profile)."""
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise TargetError(f"{where}: target must be a mapping of settings, not {type(settings).__name__}",
                          f"known keys: {', '.join(TARGET_KEYS)}")
    unknown = sorted(str(key) for key in settings if key not in TARGET_KEYS)
    if unknown:
        raise TargetError(f"{where}: target has unknown keys: {', '.join(unknown)}",
                          f"known keys: {', '.join(TARGET_KEYS)}")
    for key, value in settings.items():
        kinds = TARGET_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise TargetError(f"{where}: target.{key} has the wrong type ({value!r})", f"fix target.{key}")
    if settings.get("transport", "local") not in TRANSPORTS:
        raise TargetError(f"{where}: target.transport {settings['transport']!r} is unknown",
                          f"use one of: {', '.join(TRANSPORTS)}")
    if not all(isinstance(core, int) and not isinstance(core, bool) and core >= 0
               for core in settings.get("pin_cores", [])):
        raise TargetError(f"{where}: target.pin_cores must be a list of core numbers", "e.g. pin_cores: [4, 5, 6, 7]")
    if not all(isinstance(option, str) for option in settings.get("ssh_options", [])):
        raise TargetError(f"{where}: target.ssh_options must be a list of strings",
                          "e.g. ssh_options: [\"StrictHostKeyChecking=accept-new\"]")
    if any(core > MAX_CORE for core in settings.get("pin_cores", [])):
        raise TargetError(f"{where}: target.pin_cores names a core above {MAX_CORE}", "give the target's core numbers")
    port = settings.get("port", 22)
    if not 1 <= port <= 65535:
        raise TargetError(f"{where}: target.port {port} is not a port number", "use 1..65535")
    # NaN and inf are refused with the rest: an infinite pause or timeout would wait until killed
    if "cool_down_s" in settings and not 0 <= settings["cool_down_s"] <= MAX_COOL_DOWN_S:
        raise TargetError(f"{where}: target.cool_down_s must be from 0 to {MAX_COOL_DOWN_S:g} s, got "
                          f"{settings['cool_down_s']!r}", "fix target.cool_down_s")
    if "timeout_s" in settings and not 0 < settings["timeout_s"] <= MAX_TIMEOUT_S:
        raise TargetError(f"{where}: target.timeout_s must be above 0 and at most {MAX_TIMEOUT_S:g} s, got "
                          f"{settings['timeout_s']!r}", "fix target.timeout_s")
    if "work_dir" in settings and not settings["work_dir"].startswith("/"):
        raise TargetError(f"{where}: target.work_dir {settings['work_dir']!r} is not an absolute path",
                          "give the work directory on the target as an absolute path, e.g. /tmp")
    for key in ("host", "user"):
        check_ssh_name(settings.get(key), f"{where}: target.{key}")
    return dict(settings)


def check_ssh_name(value, what: str) -> None:
    """A host or user name that ssh would read as an option (a leading '-') is refused."""
    if value is not None and (not value or value.startswith("-") or any(char.isspace() for char in value)):
        raise TargetError(f"{what} {value!r} is not a host or user name", "give a name without spaces or a leading -")


def parse_ssh_url(url: str) -> dict:
    """ssh://user@host:port -> target settings."""
    bad = TargetError(f"--target {url!r} is not an ssh address", "write it as ssh://user@host or ssh://user@host:port")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number or above 65535, a broken IPv6 address
        raise bad from None
    if parts.scheme != "ssh" or not parts.hostname or port == 0 or parts.path not in ("", "/"):
        raise bad
    settings = {"transport": "ssh", "host": parts.hostname}
    if parts.username:
        settings["user"] = urllib.parse.unquote(parts.username)
    if port is not None:
        settings["port"] = port
    for key in ("host", "user"):
        check_ssh_name(settings.get(key), f"--target {key}")
    return settings


def default_emulator_python() -> str:
    """$DEFORMER_BENCH_ARM_EMULATOR, else the first .arm-emulator/bin/python3 of the checkout or the current
    directory (where `make arm-emulator` builds it)."""
    if os.environ.get(EMULATOR_VARIABLE):
        return os.environ[EMULATOR_VARIABLE]
    candidates = [PACKAGE_DIR.parent / ".arm-emulator" / "bin" / "python3", Path.cwd() / ".arm-emulator" / "bin" / "python3"]
    return str(next((path for path in candidates if path.is_file()), candidates[0]))


def make_target(device: Device, settings: dict, target_url: str = None, allow_emulation: bool = False,
                host_machine: str = None) -> Target:
    """The target a device runs on: --target, else the profile's target, else this machine; an ARM device on a
    machine of another kind needs a remote target or, when allowed, the emulator."""
    settings = dict(settings)
    if target_url:
        # the profile's python is kept when it was meant for an ssh target; a local one means nothing there
        kept = {key: value for key, value in settings.items()
                if key != "transport" and (key != "python" or settings.get("transport") == "ssh")}
        settings = {**kept, **parse_ssh_url(target_url)}
    transport = settings.get("transport", "local")
    common = {key: settings[key] for key in ("timeout_s", "cool_down_s") if key in settings}
    if "pin_cores" in settings:
        common["pin_cores"] = tuple(settings["pin_cores"])
    if transport == "emulator" and device.name != "arm":
        raise TargetError(f"{device.name}: the emulator transport runs aarch64 code only", "use it with --device arm")
    host_machine = host_machine or platform.machine()
    if device.name == "arm" and transport == "local" and host_machine.lower() not in ARM_MACHINES:
        if not allow_emulation:
            raise TargetError(f"arm: this machine is {host_machine}, not an ARM one, and no ARM target is given",
                              "give --target ssh://user@host[:port] (or an arm profile with a target), or "
                              "--allow-emulation for a functional check under qemu (no speed figures)")
        transport = "emulator"
    if transport == "emulator":
        return EmulatorTarget(python=local_path(settings.get("python") or default_emulator_python()), **common)
    if transport == "ssh":
        ssh = {key: settings[key] for key in ("host", "port", "user", "identity_file", "python") if key in settings}
        if "work_dir" in settings:
            ssh["work_root"] = settings["work_dir"]
        return SshTarget(ssh_options=tuple(settings.get("ssh_options", ())), **ssh, **common)
    return Target(python=local_path(settings.get("python") or sys.executable), **common)


def local_path(python: str) -> str:
    """A Python given by a relative path is resolved here: the runner starts in its work directory."""
    return str(Path(python).expanduser().absolute()) if "/" in python or python.startswith("~") else python
