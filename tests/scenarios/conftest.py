"""Tiny graph sets for the scenarios: the unsplit system's (k=0) and the deformer's (k=1), each with its per-channel
int8 variant, both of a tiny BERT with MiniLM's tokenizer (16 + 96 tokens), their passage caches of the small SQuAD file
(4 dev paragraphs, 106 questions), and what LoadGen wrote, read independently of deformer_bench.scenarios.logs."""

import json
from pathlib import Path

import pytest

LENGTHS = dict(question_len=16, passage_len=96)
DOC_STRIDE = 16


@pytest.fixture(scope="session")
def scenario_graphs(tmp_path_factory, tiny_with_tokenizer) -> dict:
    from deformer_bench.model import Deformer
    from exporters.onnx_export import export_graph_set

    root = tmp_path_factory.mktemp("scenario-graphs")
    graphs = {}
    for name, layer in (("unsplit", 0), ("deformer", 1)):
        deformer = Deformer.from_pretrained(tiny_with_tokenizer, layer=layer, **LENGTHS)
        export_graph_set(deformer, root / name, progress=False, variants=("int8-arm64",))
        graphs[name] = root / name
    return graphs


def build_cache(graphs: Path, passages: Path, out: Path, variant: str = "float32") -> Path:
    """deformer-cache build as a user runs it: the float32 graphs by default, a variant's with --variant."""
    from deformer_bench.cli.cache import cache_main

    assert cache_main(["build", str(graphs), *(["--variant", variant] if variant != "float32" else []), "--passages",
                       str(passages), "--out", str(out), "--doc-stride", str(DOC_STRIDE), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def scenario_caches(tmp_path_factory, scenario_graphs, small_train_file) -> dict:
    """{variant: the deformer graph set's passage cache of every paragraph of the small file}."""
    root = tmp_path_factory.mktemp("scenario-caches")
    return {variant: build_cache(scenario_graphs["deformer"], small_train_file, root / variant, variant)
            for variant in ("float32", "int8-arm64")}


def scenario_argv(graphs: dict, caches: list, dataset: Path, out: Path, *extra) -> list:
    return ["--dataset", str(dataset), "--unsplit-graphs", str(graphs["unsplit"]), "--deformer-graphs",
            str(graphs["deformer"]), *(["--passage-cache", *map(str, caches)] if caches else []), "--doc-stride",
            str(DOC_STRIDE), "--output", str(out), "--quick", "--quiet", *extra]


def run_bench(argv: list) -> int:
    """deformer-bench's exit code (argparse's own refusals exit 2 too)."""
    from deformer_bench.cli.bench import bench_main
    from deformer_bench.cli.common import run_cli

    try:
        return run_cli(bench_main, argv)
    except SystemExit as exit:
        return exit.code


def detail_values(directory: Path) -> dict:
    """LoadGen's detail log as {key: value}."""
    values = {}
    for line in (Path(directory) / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG "):
            entry = json.loads(line[len(":::MLLOG "):])
            values[entry["key"]] = entry["value"]
    return values


def summary_verdict(directory: Path) -> str:
    for line in (Path(directory) / "mlperf_log_summary.txt").read_text().splitlines():
        if line.startswith("Result is : "):
            return line.split(": ", 1)[1].strip()
    return None
