"""The package's layers (setup.cfg's import-linter contracts) hold, and a project import inside a function only
defers a heavy optional dependency, saying which."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "deformer_bench"
# What an import inside a function may defer, named in its comment: `# deferred: torch` (on the import's line or
# the line above it). Anything else belongs at the top of the module.
HEAVY = ("torch", "transformers", "ray", "matplotlib", "pandas", "faiss", "mlperf_loadgen", "onnx")
DEFERRED = re.compile(r"#\s*deferred:\s*(?P<why>.+)$")


def lint_imports(config: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), "--config", str(config), "--no-cache"], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def test_the_layer_contracts_hold():
    completed = lint_imports(REPO / "setup.cfg")
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-2000:]
    assert "0 broken" in completed.stdout


def function_level_project_imports(path: Path):
    """(line number, statement text, the reason comment or None) of each import of deformer_bench inside a
    function of `path`."""
    source = path.read_text()
    lines = source.splitlines()
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            project = (isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith(
                "deformer_bench"))) or (isinstance(node, ast.Import) and any(
                alias.name.startswith("deformer_bench") for alias in node.names))
            if not project:
                continue
            near = lines[node.end_lineno - 1] + "\n" + lines[node.lineno - 2] if node.lineno > 1 else ""
            reason = next((match.group("why") for line in near.splitlines() for match in [DEFERRED.search(line)]
                           if match), None)
            yield f"{module}:{node.lineno}", lines[node.lineno - 1].strip(), reason


def test_a_project_import_inside_a_function_only_defers_a_heavy_dependency_and_says_which():
    found = [entry for path in sorted(PACKAGE.rglob("*.py")) for entry in function_level_project_imports(path)]
    unexplained = [f"{where}: {text}" for where, text, reason in found
                   if reason is None or not any(name in reason for name in HEAVY)]
    assert unexplained == [], ("move these imports to the top of their module, or say what heavy dependency they "
                               "defer (`# deferred: torch`):\n" + "\n".join(unexplained))


@pytest.mark.parametrize("importer, imported", [
    ("deformer_bench.exporters.variants", "deformer_bench.bench.summary"),  # exporters import nothing from bench
    ("deformer_bench.report", "deformer_bench.bench.stats"),  # the report never imports bench
    ("deformer_bench.passage_cache.codecs", "deformer_bench.serving"),  # the cache imports nothing from serving
    ("deformer_bench.contracts.graphs", "deformer_bench.runtime.sessions"),  # a lower layer imports a higher one
])
def test_a_backward_import_breaks_the_contracts(tmp_path, importer, imported):
    """The contracts can fail: the same check over a copy of the package with one backward import added."""
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "deformer_bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "setup.cfg", copy / "setup.cfg")
    module = copy / Path(*importer.split(".")).with_suffix(".py")
    module.write_text(module.read_text() + f"\n\ndef backward():\n    import {imported}  # deferred: torch\n")
    completed = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--config", "setup.cfg",
                                "--no-cache"], capture_output=True, text=True, cwd=copy, timeout=600,
                               env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert completed.returncode != 0 and "broken" in completed.stdout.lower(), completed.stdout[-3000:]
    assert f"{importer} -> {imported}" in completed.stdout.replace("\n", " ").replace("  ", " ") or \
        importer in completed.stdout, completed.stdout[-3000:]
