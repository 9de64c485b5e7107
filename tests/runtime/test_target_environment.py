"""The measured machine as the runner reads it on the target (standard library only)."""

from deformer_bench.runtime import target_environment
from deformer_bench.runtime.target_environment import cpu_features, cpu_model, describe_target, emulation

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu avx2 fma

processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu avx2 fma
"""


def arm_block(index: int, part: str, implementer: str = "0x41") -> str:
    return (f"processor\t: {index}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp\n"
            f"CPU implementer\t: {implementer}\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: {part}\n"
            "CPU revision\t: 0\n")


def test_an_x86_cpu_is_named_by_its_model_name():
    assert cpu_model(X86) == "AMD EPYC 7B12" and cpu_features(X86) == ["fpu", "avx2", "fma"]


def test_arm_cores_are_decoded_from_implementer_and_part_and_counted():
    """A phone's big.LITTLE layout: 4 Cortex-A55 + 4 Cortex-A76 (Snapdragon 855-like), named, not numbered."""
    text = "\n".join([arm_block(i, "0xd05") for i in range(4)] + [arm_block(i, "0xd0b") for i in range(4, 8)])
    assert cpu_model(text) == "4x Cortex-A55 + 4x Cortex-A76"
    assert "asimd" in cpu_features(text)


def test_servers_and_unknown_arm_parts():
    assert cpu_model(arm_block(0, "0xd0c")) == "1x Neoverse-N1"
    assert cpu_model(arm_block(0, "0x999", implementer="0x48")) == "1x ARM implementer 0x48 part 0x999"


def test_nothing_readable_falls_back_to_the_machine_type():
    assert cpu_model("") and cpu_model("garbage without colons\n") == cpu_model("")


def test_the_target_description_names_what_a_record_needs(monkeypatch):
    monkeypatch.delenv(target_environment.EMULATOR_VARIABLE, raising=False)
    described = describe_target()
    assert described["emulated"] is False and described["emulator"] is None
    assert described["onnxruntime"]["available_providers"] and described["cpu"]["logical_cores"] >= 1
    assert isinstance(described["gpus"], list) and isinstance(described["cpu"]["governors"], dict)
    monkeypatch.setenv(target_environment.EMULATOR_VARIABLE, "qemu-user cortex-a76")
    assert describe_target()["emulated"] is True  # the emulator's wrapper says so; the host cannot


def test_thermal_zones_that_cannot_be_read_are_left_out(tmp_path, monkeypatch):
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "temp").write_text("47500\n")
    (zone / "type").write_text("cpu-thermal\n")
    broken = tmp_path / "thermal_zone1"
    broken.mkdir()
    (broken / "temp").write_text("not a number\n")
    monkeypatch.setattr(target_environment.glob, "glob",
                        lambda pattern: [str(zone), str(broken)] if "thermal" in pattern else [])
    assert target_environment.thermal_readings() == {"cpu-thermal (thermal_zone0)": 47.5}


def test_qemu_user_is_found_without_the_wrappers_variable(monkeypatch):
    """binfmt_misc and `docker --platform linux/arm64` run qemu-user without our wrapper: still emulated."""
    monkeypatch.delenv(target_environment.EMULATOR_VARIABLE, raising=False)
    assert "on a x86_64 kernel" in emulation("aarch64", "x86_64", "python3.11")
    assert emulation("aarch64", "", "qemu-aarch64-st") == "runs in qemu-aarch64-st"
    assert emulation("aarch64", "aarch64", "python3") is None  # a real ARM machine
    assert emulation("arm64", "aarch64", "python3") is None
    assert emulation("armv7l", "aarch64", "python3") is None  # 32-bit user space on a 64-bit ARM kernel
    assert emulation("x86_64", "", "python3") is None  # a kernel before 6.1 has no /proc/sys/kernel/arch
