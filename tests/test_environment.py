"""What a result says the host was: the CPU read by the one /proc/cpuinfo parser the runner uses on a target."""

from deformer_bench import environment
from deformer_bench.runtime import target_environment

ARM_CPUINFO = "".join(f"processor\t: {index}\nFeatures\t: fp asimd evtstrm aes\nCPU implementer\t: 0x41\n"
                      f"CPU part\t: {'0xd0b' if index < 4 else '0xd05'}\n\n" for index in range(8))


def test_the_host_reads_its_cpu_as_the_runner_reads_a_target(monkeypatch):
    monkeypatch.setattr(target_environment, "read_cpuinfo", lambda: ARM_CPUINFO)
    host = environment.cpu_info()
    assert host["model"] == "4x Cortex-A76 + 4x Cortex-A55" == target_environment.cpu_model(ARM_CPUINFO)
    assert host["flags"] == ["asimd"]


def test_this_machine_is_described_alike_on_both_sides():
    assert environment.cpu_info()["model"] == target_environment.describe_target()["cpu"]["model"]


def test_a_long_process_records_the_commit_it_imported_and_says_when_the_checkout_moved(monkeypatch):
    """A training queue runs for hours while commits land beside it: its records name the code it runs."""
    failed = {"commit": None, "dirty": None}  # git timed out: neither kept as the first look nor compared
    states = iter([failed, {"commit": "a" * 40, "dirty": False}, {"commit": "a" * 40, "dirty": False}, failed,
                   {"commit": "b" * 40, "dirty": False}])
    monkeypatch.setattr(environment, "git_state", lambda: next(states))
    monkeypatch.setattr(environment, "_first_git_state", None)
    assert environment.git_commit() == failed
    assert environment.git_commit() == environment.git_commit() == {"commit": "a" * 40, "dirty": False}
    assert environment.git_commit() == {"commit": "a" * 40, "dirty": False}
    assert environment.git_commit() == {"commit": "a" * 40, "dirty": False,
                                        "checkout_now": {"commit": "b" * 40, "dirty": False}}


def test_this_checkout_has_a_commit():
    import re

    assert re.fullmatch("[0-9a-f]{40}", environment.git_state()["commit"])
