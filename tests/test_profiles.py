import pytest

from deformer_bench.errors import ProfileError
from deformer_bench.profiles import available_profiles, load_profile


def test_server_cpu_profile_loads():
    profile = load_profile("server-cpu")
    assert profile.device == "cpu" and profile.allow_spinning is False
    assert profile.question_len + profile.passage_len == 320
    quick = profile.quick()
    assert quick.name == "server-cpu+quick" and quick.batch_sizes == (profile.batch_sizes[0],)
    assert "server-cpu" in available_profiles()


def write(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return str(path)


BASE = "name: t\ndescription: d\ndevice: cpu\nintra_op_threads: 1\nbatch_sizes: [1]\n"


def test_profile_from_a_path(tmp_path):
    assert load_profile(write(tmp_path, BASE)).name == "t"


@pytest.mark.parametrize("extra, message", [
    ("thread: 3\n", "unknown keys: thread"),
    ("min_count: 0\n", "min_count must be a positive integer"),
    ("graph_optimization: max\n", "graph_optimization 'max' is unknown"),
    ("min_time_s: 10\nmax_time_s: 5\n", "max_time_s < min_time_s"),
])
def test_bad_profiles(tmp_path, extra, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(write(tmp_path, BASE + extra))


def test_bad_batch_sizes_and_missing_keys(tmp_path):
    with pytest.raises(ProfileError, match="batch_sizes"):
        load_profile(write(tmp_path, BASE.replace("[1]", "[0, 2]")))
    with pytest.raises(ProfileError, match="lacks required keys: device"):
        load_profile(write(tmp_path, BASE.replace("device: cpu\n", "")))


def test_unknown_profile():
    with pytest.raises(ProfileError, match="unknown profile 'laptop'.*server-cpu"):
        try:
            load_profile("laptop")
        except ProfileError as error:
            raise ProfileError(f"{error.message} {error.hint}") from None
