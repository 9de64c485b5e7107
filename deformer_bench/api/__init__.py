"""The library API: each command's work as a function of a typed request, returning a typed result (the commands
in deformer_bench.cli turn options into the request and the result into an exit code).

    export(ExportRequest) -> ExportResult                 deformer-export
    benchmark(BenchmarkRequest) -> BenchmarkResult        deformer-bench (the graph-level benchmark)
    build_cache(CacheBuildRequest) -> CacheBuildResult    deformer-cache build
    answer(AnswerRequest) -> AnswerResult                 deformer-answer
    evaluate(EvaluateRequest) -> EvaluateResult           deformer-eval

Errors are DeformerBenchError subclasses (contracts.errors: a message and a hint).
"""

import importlib

# Name -> the module defining it (named apart from its function, which the submodule would hide once imported).
# Loaded on first use: export and benchmark import torch, while answer and build_cache serve with numpy and
# onnxruntime only (deformer-answer never loads torch).
_MODULES = {**dict.fromkeys(("ExportRequest", "ExportResult", "export"), "exporting"),
            **dict.fromkeys(("BenchmarkRequest", "BenchmarkResult", "benchmark"), "benchmarking"),
            **dict.fromkeys(("CacheBuildRequest", "CacheBuildResult", "build_cache"), "caching"),
            **dict.fromkeys(("AnswerRequest", "AnswerResult", "answer"), "answering"),
            **dict.fromkeys(("EvaluateRequest", "EvaluateResult", "evaluate"), "evaluating")}
__all__ = sorted(_MODULES)


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")  # deferred: torch (export and benchmark's)
    return getattr(module, name)


def __dir__():
    return __all__
