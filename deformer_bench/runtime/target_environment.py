"""What the measured machine is, read on that machine by the runner (standard library only, so it runs under an
emulated aarch64 Python, on a phone or a board with nothing but numpy and onnxruntime).

The host never describes the target: a record's CPU, cores, governor, temperatures, onnxruntime providers and
GPU are what the runner read where it ran.
"""

import glob
import os
import platform

# /proc/cpuinfo on ARM gives numbers, not names: (implementer, part) -> core. The cores of phones, boards and
# ARM servers a DeFormer is likely to be measured on.
ARM_CORES = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD04): "Cortex-A35", (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57", (0x41, 0xD08): "Cortex-A72", (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77", (0x41, 0xD40): "Neoverse-V1", (0x41, 0xD41): "Cortex-A78",
    (0x41, 0xD44): "Cortex-X1", (0x41, 0xD46): "Cortex-A510", (0x41, 0xD47): "Cortex-A710",
    (0x41, 0xD48): "Cortex-X2", (0x41, 0xD49): "Neoverse-N2", (0x41, 0xD4D): "Cortex-A715",
    (0x41, 0xD4E): "Cortex-X3", (0x41, 0xD4F): "Neoverse-V2", (0x41, 0xD80): "Cortex-A520",
    (0x41, 0xD81): "Cortex-A720", (0x41, 0xD82): "Cortex-X4",
    (0x51, 0x802): "Kryo 385 Gold", (0x51, 0x803): "Kryo 385 Silver", (0x51, 0x804): "Kryo 485 Gold",
    (0x51, 0x805): "Kryo 485 Silver", (0x61, 0x022): "Apple M1 Icestorm", (0x61, 0x023): "Apple M1 Firestorm",
    (0xC0, 0xAC3): "Ampere-1",
}
# Set by the emulator's wrapper (scripts/arm-emulator.sh): this Python runs under qemu-user.
EMULATOR_VARIABLE = "DEFORMER_BENCH_EMULATOR"
MACHINE_NAMES = {"arm64": "aarch64", "amd64": "x86_64"}
# 32-bit user space on a 64-bit kernel of the same family runs natively.
NATIVE_PAIRS = {("aarch64", "armv7l"), ("aarch64", "armv8l"), ("x86_64", "i686"), ("x86_64", "i386")}


def _read(path: str):
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _int(text: str):
    try:
        return int(text.strip(), 0)
    except (ValueError, AttributeError):
        return None


def read_cpuinfo() -> str:
    """/proc/cpuinfo's text; empty where there is none (macOS, Windows) or it cannot be read."""
    return _read("/proc/cpuinfo") or ""


def cpu_blocks(text: str) -> list:
    """/proc/cpuinfo as one {key: value} per processor block."""
    blocks, current = [], {}
    for line in (text or "").splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
            continue
        key, _, value = line.partition(":")
        current.setdefault(key.strip(), value.strip())
    if current:
        blocks.append(current)
    return blocks


def cpu_model(text: str) -> str:
    """The CPU's name: x86 'model name'; on ARM the cores decoded from implementer/part, counted
    (e.g. '4x Cortex-A76 + 4x Cortex-A55'); the machine type where /proc/cpuinfo says neither."""
    blocks = cpu_blocks(text)
    names = [block["model name"] for block in blocks if "model name" in block]
    if names:
        return names[0]
    cores = []
    for block in blocks:
        implementer, part = _int(block.get("CPU implementer")), _int(block.get("CPU part"))
        if implementer is not None and part is not None:
            cores.append(ARM_CORES.get((implementer, part), f"ARM implementer {implementer:#x} part {part:#x}"))
    if cores:
        counted = {name: cores.count(name) for name in dict.fromkeys(cores)}
        return " + ".join(f"{count}x {name}" for name, count in counted.items())
    hardware = [block["Hardware"] for block in blocks if "Hardware" in block]
    return hardware[0] if hardware else platform.machine()


def cpu_features(text: str) -> list:
    for block in cpu_blocks(text):
        for key in ("flags", "Features"):
            if key in block:
                return block[key].split()
    return []


def governors() -> dict:
    """{governor: how many CPUs use it} (cpufreq); empty where the kernel does not expose it (VMs, containers)."""
    found = {}
    for path in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")):
        value = (_read(path) or "").strip()
        if value:
            found[value] = found.get(value, 0) + 1
    return found


def thermal_readings() -> dict:
    """{zone type: degrees C} of every thermal zone that can be read; empty where none can."""
    readings = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone[0-9]*")):
        millidegrees = _int(_read(os.path.join(zone, "temp")) or "")
        if millidegrees is None:
            continue
        name = (_read(os.path.join(zone, "type")) or os.path.basename(zone)).strip()
        readings[f"{name} ({os.path.basename(zone)})"] = millidegrees / 1000
    return readings


def memory_total_gb():
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def usable_cores():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def gpus() -> list:
    """NVIDIA GPUs through NVML (nvidia-ml-py), where it is installed and a driver answers."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no device: NVMLError has many subclasses
        return []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            found.append({"index": index, "name": _text(pynvml.nvmlDeviceGetName(handle)), "driver": driver,
                          "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
                          "memory_gb": round(memory.total / 2**30, 1)})
        return found
    finally:
        pynvml.nvmlShutdown()


def nvidia_device_count() -> int:
    """GPUs the NVIDIA driver exposes (Linux /proc), whether or not NVML's Python binding is installed."""
    return len(glob.glob("/proc/driver/nvidia/gpus/*"))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def onnxruntime_facts() -> dict:
    try:
        import onnxruntime
    except ImportError as error:
        return {"version": None, "error": str(error), "available_providers": []}
    return {"version": onnxruntime.__version__, "available_providers": onnxruntime.get_available_providers()}


def emulation(machine: str = None, kernel_arch: str = None, process_name: str = None):
    """How this Python is emulated, or None when it runs natively. qemu-user shows the guest's machine in
    uname but passes the host kernel's /proc/sys/kernel/arch (Linux 6.1+) and the host process's name
    through; our wrapper also says so in EMULATOR_VARIABLE. An emulator found any of these ways is one:
    binfmt_misc and `docker --platform` set no variable."""
    if os.environ.get(EMULATOR_VARIABLE):
        return os.environ[EMULATOR_VARIABLE]
    machine = (machine or platform.machine()).lower()
    machine = MACHINE_NAMES.get(machine, machine)
    kernel = (kernel_arch if kernel_arch is not None else _read("/proc/sys/kernel/arch") or "").strip().lower()
    kernel = MACHINE_NAMES.get(kernel, kernel)
    if kernel and kernel != machine and (kernel, machine) not in NATIVE_PAIRS:
        return f"{machine} user space on a {kernel} kernel (qemu-user or binfmt_misc)"
    if process_name is None:
        status = _read("/proc/self/status") or ""
        process_name = next((line.split(":", 1)[1].strip() for line in status.splitlines()
                             if line.startswith("Name:")), "")
    if process_name.startswith("qemu-"):
        return f"runs in {process_name}"
    return None


def describe_target() -> dict:
    """This machine, as a result records it."""
    cpuinfo = read_cpuinfo()
    emulator = emulation()
    return {
        "machine": platform.machine(),
        "cpu": {"model": cpu_model(cpuinfo), "features": cpu_features(cpuinfo)[:64],
                "logical_cores": os.cpu_count(), "usable_cores": usable_cores(), "governors": governors(),
                "memory_gb": memory_total_gb()},
        "os": platform.platform(),
        "python": platform.python_version(),
        "emulated": emulator is not None,
        "emulator": emulator,
        "onnxruntime": onnxruntime_facts(),
        "gpus": gpus(),
        "nvidia_devices": nvidia_device_count(),
    }
