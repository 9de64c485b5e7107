from pathlib import Path

import pytest

from deformer_bench import profiles
from deformer_bench.errors import ProfileError
from deformer_bench.profiles import available_profiles, load_profile

REPO_PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def test_server_cpu_profile_loads():
    profile = load_profile("server-cpu")
    assert profile.device == "cpu" and profile.allow_spinning is False
    assert profile.question_len + profile.passage_len == 320
    quick = profile.quick()
    assert quick.name == "server-cpu+quick" and quick.batch_sizes == (profile.batch_sizes[0],)
    assert "server-cpu" in available_profiles()


def test_builtin_profiles_are_the_repository_folder():
    """The installed package deformer_bench.builtin_profiles is the top-level profiles/ folder, every file of it."""
    assert available_profiles() == sorted(path.stem for path in REPO_PROFILES.glob("*.yaml"))
    for name in available_profiles():
        profile = load_profile(name)
        assert profile.name == name and Path(profile.source).is_file()


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


BASE = "name: t\ndescription: d\ndevice: cpu\nintra_op_threads: 1\nbatch_sizes: [1]\n"


def test_profile_from_a_path(tmp_path):
    assert load_profile(write(tmp_path, BASE)).name == "t"
    assert load_profile(write(tmp_path, BASE, name="p.yml")).source.endswith("p.yml")


@pytest.mark.parametrize("extra, message", [
    ("thread: 3\n", "unknown keys: thread"),
    ("min_count: 0\n", "min_count must be a positive integer"),
    ("graph_optimization: max\n", "graph_optimization 'max' is unknown"),
    ("min_time_s: 10\nmax_time_s: 5\n", "max_time_s < min_time_s"),
    # non-finite numbers: NaN passes every comparison, inf never ends a timed loop
    ("min_time_s: .nan\n", "min_time_s must be a finite number of seconds from 0 to 3600, got nan"),
    ("max_time_s: .nan\n", "max_time_s must be a finite number"),
    ("max_time_s: .inf\n", "max_time_s must be a finite number of seconds from 0 to 3600, got inf"),
    ("warmup_min_time_s: .inf\n", "warmup_min_time_s must be a finite number"),
    ("warmup_min_time_s: .NaN\n", "warmup_min_time_s must be a finite number"),
    # issue 22, finding 14: finite but absurd durations and repeats would run until killed
    ("min_time_s: 1.0e+9\nmax_time_s: 2.0e+9\n", "min_time_s must be a finite number of seconds from 0 to 3600"),
    ("warmup_min_time_s: 3601\n", "warmup_min_time_s must be a finite number of seconds from 0 to 3600"),
    ("memory_iterations: 99999999999999999999\n", "memory_iterations must be at most 100,000"),
    ("min_count: 100001\n", "min_count must be at most 100,000"),
    ("target: {cool_down_s: .inf}\n", "target.cool_down_s must be from 0 to 3600 s"),
    ("target: {cool_down_s: 1.0e+12}\n", "target.cool_down_s must be from 0 to 3600 s"),
    ("target: {timeout_s: .inf}\n", "target.timeout_s must be above 0 and at most 86400 s"),
    # the seed goes to numpy.random.default_rng in the runner
    ("seed: -1\n", "seed must be an integer >= 0, got -1"),
    ("seed: abc\n", "seed must be an integer >= 0, got 'abc'"),
    ("seed: 1.5\n", "seed must be an integer >= 0"),
    ("seed: true\n", "seed must be an integer >= 0, got True"),
    # a key that is not a string is an unknown key, not a TypeError while listing them
    ("3: x\n", "unknown keys: 3"),
    ("null: x\n", "unknown keys: None"),
    # PyYAML silently keeps the last of two equal keys
    ("min_count: 3\nmin_count: 50\n", r"'min_count' is given twice \(lines 6 and 7\)"),
    ("x: {a: 1, a: 2}\n", r"'a' is given twice \(line 6\)"),
    # where the runner runs, and what it runs with
    ("target: {hots: x}\n", "target has unknown keys: hots"),
    ("target: {transport: adb}\n", "target.transport 'adb' is unknown"),
    ("target: [ssh]\n", "target must be a mapping"),
    ("target: {port: 70000}\n", "is not a port number"),
    ("torch_dtype: float8\n", "torch_dtype 'float8' is unknown"),
    ("graph_dtype: int4\n", "graph_dtype 'int4' is unknown"),
    ("provider_options: {use_tf32: [1]}\n", "provider_options must map names to strings or numbers"),
    ("provider_options: use_tf32\n", "provider_options must map names to strings or numbers"),
])
def test_bad_profiles(tmp_path, extra, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(write(tmp_path, BASE + extra))


@pytest.mark.parametrize("key, value", [
    ("name", "5"), ("name", ""), ("name", "''"), ("name", "[a]"),
    ("description", "[a, b]"), ("description", "{a: 1}"),
    ("device", "3"), ("device", "''"),
])
def test_text_settings_must_be_strings(tmp_path, key, value):
    text = "".join(f"{key}: {value}\n" if line.startswith(f"{key}:") else f"{line}\n"
                   for line in BASE.splitlines())
    with pytest.raises(ProfileError, match=f"{key} must be a non-empty string"):
        load_profile(write(tmp_path, text))


def test_bad_batch_sizes_and_missing_keys(tmp_path):
    with pytest.raises(ProfileError, match="batch_sizes"):
        load_profile(write(tmp_path, BASE.replace("[1]", "[0, 2]")))
    with pytest.raises(ProfileError, match=r"batch_sizes must be a list of positive integers, got '1,4'"):
        load_profile(write(tmp_path, BASE.replace("[1]", "'1,4'")))
    with pytest.raises(ProfileError, match="lacks required keys: device"):
        load_profile(write(tmp_path, BASE.replace("device: cpu\n", "")))


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("- name: t\n- device: cpu\n", "must be a mapping of settings, not a list"),
    ("server-cpu\n", "must be a mapping of settings, not a str"),
    ("name: [t\n", "is not valid YAML"),
])
def test_profile_files_that_are_not_settings(tmp_path, text, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(write(tmp_path, text))


def test_profile_file_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.replace("description: d", "description: caf\xe9").encode("latin-1"))
    with pytest.raises(ProfileError, match=r"latin1.yaml is not UTF-8 text \(byte 0xe9 at offset \d+, line 2") as error:
        load_profile(str(path))
    assert "UTF-8" in error.value.hint


def test_profile_path_is_a_directory(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ProfileError, match="is a directory, not a YAML file"):
        load_profile(str(tmp_path / "dir.yaml"))


def test_profile_file_unreadable(tmp_path, monkeypatch):
    path = write(tmp_path, BASE)

    def refuse(self):  # what reading a mode-000 file does (the tests may run as root, who can read it anyway)
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ProfileError, match="cannot read profile .*p.yaml: Permission denied"):
        load_profile(path)


def test_profile_path_too_long(tmp_path):
    with pytest.raises(ProfileError, match="cannot read profile .*: File name too long"):
        load_profile(str(tmp_path / ("x" * 300 + ".yaml")))


def test_profile_file_missing(tmp_path):
    with pytest.raises(ProfileError, match="profile file .*server-cpu.yaml does not exist") as error:
        load_profile(str(tmp_path / "server-cpu.yaml"))
    assert "server-cpu" in error.value.hint and "without .yaml" in error.value.hint


@pytest.mark.parametrize("name", ["laptop", "../profiles/server-cpu", "SERVER-CPU"])
def test_unknown_profile(name):
    with pytest.raises(ProfileError, match=f"unknown profile {name!r}") as error:
        load_profile(name)
    assert all(builtin in error.value.hint for builtin in ("server-cpu", "server-cpu-1thread", "server-cpu-spinning"))


def test_builtin_profiles_not_installed(monkeypatch, tmp_path):
    """A stale editable install (made before the profiles were a package) gets one error with the fix."""
    monkeypatch.setattr(profiles, "BUILTIN_PROFILES_PACKAGE", "deformer_bench.no_such_profiles")
    with pytest.raises(ProfileError, match="built-in profiles .* are not installed") as error:
        load_profile("server-cpu")
    assert "pip install -e ." in error.value.hint
    assert load_profile(write(tmp_path, BASE)).name == "t"  # a profile given by path does not need them


def test_every_builtin_profile_loads_and_names_a_known_device():
    from deformer_bench.bench.devices import DEVICES

    for name in available_profiles():
        profile = load_profile(name)
        assert profile.device in DEVICES, name
    assert {"gpu-cuda", "gpu-cuda-torch", "arm-mobile", "arm-mobile-1thread", "arm-emulated"} <= set(available_profiles())
    assert load_profile("arm-emulated").target["transport"] == "emulator"
    assert load_profile("gpu-cuda-torch").torch_dtype == "float16"


def test_a_profile_for_an_unknown_device_is_refused(tmp_path):
    with pytest.raises(ProfileError, match="device 'tpu' is unknown"):
        load_profile(write(tmp_path, BASE.replace("device: cpu", "device: tpu")))


@pytest.mark.parametrize("extra, message", [
    ("max_batch_size: 0\n", "max_batch_size must be a whole number of questions from 1 to 65,536, got 0"),
    ("max_batch_size: 2.5\n", "max_batch_size must be a whole number of questions"),
    ("max_batch_size: 99999999999999999999\n", "max_batch_size must be a whole number of questions from 1 to 65,536"),
    ("batch_wait_ms: 10001\n", "batch_wait_ms must be a number of milliseconds from 0 to 10,000, got 10001"),
    ("batch_wait_ms: -1\n", "batch_wait_ms must be a number of milliseconds"),
    ("batch_wait_ms: .nan\n", "batch_wait_ms must be a number of milliseconds"),
    ("batch_wait_ms: true\n", "batch_wait_ms must be a number of milliseconds"),
])
def test_scenario_batching_settings_are_checked(tmp_path, extra, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(write(tmp_path, BASE + extra))


def test_scenario_batching_defaults_to_the_largest_batch_size(tmp_path):
    profile = load_profile(write(tmp_path, BASE + "max_batch_size: 8\nbatch_wait_ms: 2.5\n"))
    assert profile.max_batch_size == 8 and profile.batch_wait_ms == 2.5
    assert load_profile("server-cpu").max_batch_size is None  # the scenarios then take max(batch_sizes)
