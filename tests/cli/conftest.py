import pytest


@pytest.fixture(scope="session")
def tiny_student_graphs_int8(tmp_path_factory, tiny_queue_runs):
    """The tiny k1-kd-lrs student's graph set exported with an int8 variant."""
    from deformer_bench.model import Deformer
    from exporters.onnx_export import export_graph_set

    out = tmp_path_factory.mktemp("student-graphs-int8") / "k1-kd-lrs"
    export_graph_set(Deformer.from_pretrained(tiny_queue_runs[1] / "k1-kd-lrs" / "model"), out, progress=False,
                     variants=("int8",))
    return out
