"""What every API request shares: its path fields take strings (api.common.PathFields)."""

import dataclasses
from pathlib import Path

import pytest

from deformer_bench import api


@pytest.mark.parametrize("request_type", [api.ExportRequest, api.BenchmarkRequest, api.CacheBuildRequest,
                                          api.AnswerRequest, api.EvaluateRequest])
def test_every_path_field_of_a_request_takes_a_string(request_type):
    paths = {item.name: f"some/{item.name}" for item in dataclasses.fields(request_type) if item.type is Path}
    request = request_type(**paths)
    assert paths and {name: getattr(request, name) for name in paths} == {name: Path(value)
                                                                          for name, value in paths.items()}
    # a path not given stays None
    optional = [item.name for item in dataclasses.fields(request_type) if item.type is Path and item.default is None]
    assert all(getattr(request_type(**{name: value for name, value in paths.items() if name not in optional}), name)
               is None for name in optional)
