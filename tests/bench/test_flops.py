import pytest

from deformer_bench.bench.flops import layer_flops, path_flops

BERT_BASE = dict(num_layers=12, hidden=768, intermediate=3072)


def test_layer_flops_by_hand():
    # 2 tokens, hidden 4, intermediate 8: 2*2*4*(16+16) = 512 projection, 4*4*4 = 64 attention
    assert layer_flops(2, 4, 8) == 512 + 64


def test_k0_is_the_unsplit_model():
    flops = path_flops(layer=0, question_len=27, passage_len=293, **BERT_BASE)
    assert flops.online == flops.unsplit and flops.ideal_speedup == 1.0 and flops.passage_precompute == 0


def test_paper_configuration_is_about_3_2x_fewer_flops():
    # The paper reports 3.2x fewer FLOPs for BERT-base, k=9, question 27 + passage 293.
    assert path_flops(layer=9, question_len=27, passage_len=293, **BERT_BASE).ideal_speedup == pytest.approx(3.2, abs=0.1)


def test_speedup_grows_with_k_and_batch_scales_linearly():
    ideals = [path_flops(layer=k, question_len=27, passage_len=293, **BERT_BASE).ideal_speedup for k in range(13)]
    assert ideals == sorted(ideals)
    one = path_flops(layer=4, question_len=27, passage_len=293, **BERT_BASE)
    eight = path_flops(layer=4, question_len=27, passage_len=293, batch=8, **BERT_BASE)
    assert eight.unsplit == 8 * one.unsplit and eight.ideal_speedup == one.ideal_speedup
