import pytest

from deformer_bench.bench.targets import resolve_devices
from deformer_bench.errors import DeviceError


def test_cpu_resolves():
    assert [device.name for device in resolve_devices("cpu")] == ["cpu"]


@pytest.mark.parametrize("text, message", [("tpu", "unknown device 'tpu'"), ("cpu,cuda", "'cuda' cannot be"),
                                           ("", "no device"), ("arm", "'arm' cannot be")])
def test_bad_devices(text, message):
    with pytest.raises(DeviceError, match=message):
        resolve_devices(text)
