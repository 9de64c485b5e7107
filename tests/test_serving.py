from deformer_bench.serving import evaluation_session


def test_evaluation_sessions_do_not_spin(tiny_graphs):
    options = evaluation_session(tiny_graphs / "upper.onnx").get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
