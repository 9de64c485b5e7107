"""The repository installed as a package (a wheel, not editable) works from any directory (issue 11).

Builds the wheel from a copy of the working tree (so build/ and *.egg-info never land in the repository), installs
it into a fresh venv and runs deformer-bench there from an unrelated directory. The fresh venv sees this venv's
site-packages (torch, onnxruntime, the MiniLM package...) through one .pth file that lists the directory, so
nothing is downloaded; .pth files inside a directory added that way are not processed, so this venv's editable
install of deformer-bench cannot leak in (checked below).
"""

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("deformer_bench",)


def clean_env() -> dict:
    """The environment minus anything that could put this repository on the fresh venv's import path."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def run(command, timeout, **kwargs):
    completed = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout,
                               env=clean_env(), **kwargs)
    assert completed.returncode == 0, (f"{' '.join(map(str, command))} exited {completed.returncode}\n"
                                       f"stdout:\n{completed.stdout[-4000:]}\nstderr:\n{completed.stderr[-4000:]}")
    return completed


def working_tree_files() -> list:
    """What CI checks out plus what is not committed yet: tracked and untracked files, less the ignored ones."""
    listed = run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], timeout=60)
    return sorted({name for name in listed.stdout.split("\0") if name and (REPO / name).is_file()})


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(fresh venv's python, its site-packages, the wheel, the source files) with the repository's wheel in it."""
    root = tmp_path_factory.mktemp("install")
    files = working_tree_files()
    source = root / "source"
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    wheels = root / "wheels"
    # --no-build-isolation: the build backend (setuptools, pinned in the test extra) comes from this venv, offline
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", wheels, source], timeout=300)
    (wheel,) = wheels.glob("deformer_bench-*.whl")

    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)
    python = venv / "bin" / "python"
    # this venv's pip installs into the fresh one; its site-packages are not visible yet, so pip sees no
    # deformer-bench already installed there
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel],
        timeout=300)
    site_packages = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             timeout=60).stdout.strip())
    # this venv's site-packages (and the system's, if this venv sees them); not sys.path: pytest puts the
    # repository on it
    outer = [path for path in site.getsitepackages() if Path(path).is_dir()]
    (site_packages / "outer-venv-site-packages.pth").write_text("".join(f"{path}\n" for path in outer))
    return python, site_packages, wheel, files


def test_wheel_holds_the_profiles_and_every_module(installed):
    _, _, wheel, files = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "deformer_bench/bench/runner.py" in names  # run as a script by path, in its own process
    profiles = [Path(name).name for name in files if name.startswith("profiles/") and name.endswith(".yaml")]
    assert "server-cpu.yaml" in profiles
    for name in [*profiles, "__init__.py"]:
        assert f"deformer_bench/builtin_profiles/{name}" in names
    # setup.cfg lists the packages one by one: a package folder missing from that list fails here
    modules = [name for name in files if name.endswith(".py") and name.split("/")[0] in PACKAGE_DIRS]
    assert modules and [name for name in modules if name not in names] == []
    assert not [name for name in names if name.startswith(("profiles/", "tests/"))]


def test_fresh_venv_imports_the_wheel_not_the_repository(installed, tmp_path):
    python, site_packages, _, _ = installed
    probe = ("import importlib.metadata, json, sys, deformer_bench, deformer_bench.profiles as profiles\n"
             "print(json.dumps({'module': deformer_bench.__file__, 'profiles': profiles.available_profiles(),\n"
             "    'builtin': str(profiles.builtin_profiles_dir()), 'loaded': profiles.load_profile('server-cpu').source,\n"
             "    'dist': str(importlib.metadata.distribution('deformer-bench').locate_file('')),\n"
             "    'meta_path': [repr(finder) for finder in sys.meta_path], 'sys_path': sys.path}))")
    found = json.loads(run([python, "-c", probe], timeout=120, cwd=tmp_path).stdout)
    assert Path(found["module"]) == site_packages / "deformer_bench" / "__init__.py"
    assert Path(found["builtin"]) == site_packages / "deformer_bench" / "builtin_profiles"
    assert Path(found["loaded"]) == site_packages / "deformer_bench" / "builtin_profiles" / "server-cpu.yaml"
    assert Path(found["dist"]) == site_packages
    assert found["profiles"] == sorted(path.stem for path in (REPO / "profiles").glob("*.yaml"))
    assert "server-cpu" in found["profiles"]
    # the outer venv's editable finder (__editable__...pth) was not run, and the repository is not on the path
    assert not [finder for finder in found["meta_path"] if "editable" in finder.lower()]
    assert not [entry for entry in found["sys_path"] if entry and Path(entry).resolve() == REPO]


def test_installed_deformer_bench_runs_from_another_directory(installed, tmp_path):
    python, _, _, _ = installed
    entry_point = python.parent / "deformer-bench"
    assert str(python) in entry_point.read_text()[:len(str(python)) + 100]  # its shebang: the fresh venv
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    results = tmp_path / "results"
    completed = run([entry_point, "--quick", "--quiet", "--output", results], timeout=600, cwd=elsewhere)
    assert "Traceback" not in completed.stderr
    (run_dir,) = results.iterdir()
    written = json.loads((run_dir / "results.json").read_text())
    assert written  # a results file with content
    assert (run_dir / "report.md").is_file()
    assert list(elsewhere.iterdir()) == []  # nothing written to the working directory
