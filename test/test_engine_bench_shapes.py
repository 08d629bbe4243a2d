"""The random-weight shapes bench_runtimes builds are the published models' (checked on the meta device)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_runtimes  # noqa: E402


def meta_model(shape, layers=0):
    with torch.device("meta"):
        return Qwen2_5_VLForConditionalGeneration._from_config(bench_runtimes.bench_config(shape, layers),
                                                               dtype=torch.bfloat16)


def test_7b_shape_reads_what_the_published_model_reads():
    model = meta_model("7b")
    # perf notes: 7B weights ~16.6 GB in bf16, ~14.1 GB of them read per decoded token
    assert sum(p.numel() for p in model.parameters()) * 2 / 1e9 == pytest.approx(16.6, abs=0.05)
    assert bench_runtimes.weight_bytes_torch(model, 2) / 1e9 == pytest.approx(14.1, abs=0.05)
    assert not model.config.get_text_config().tie_word_embeddings
    assert model.lm_head.weight.shape == (152064, 3584)


def test_05b_shape_is_qwen2_5_0_5b_with_the_vl_vocabulary():
    model = meta_model("0.5b")
    text = model.config.get_text_config()
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads,
            text.intermediate_size, text.tie_word_embeddings) == (896, 24, 14, 2, 4864, True)
    layers = sum(p.numel() for p in model.model.language_model.layers.parameters())
    assert layers == 24 * 14_912_384  # one Qwen2.5-0.5B decoder layer: attention with biases, MLP, two norms


def test_fewer_layers_keep_the_shape_of_each():
    full, smoke = meta_model("7b"), meta_model("7b", layers=1)
    assert len(smoke.model.language_model.layers) == 1
    per_layer = sum(p.numel() for p in full.model.language_model.layers[0].parameters())
    assert sum(p.numel() for p in smoke.model.language_model.layers.parameters()) == per_layer


def _row_lengths(model):
    """The input width of every 2-D language-model weight: what llama.cpp's 256-wide k-quant blocks divide."""
    return {p.shape[1] for p in model.model.language_model.parameters() if p.dim() == 2}


def test_15b_shape_is_qwen2_5_1_5b_and_every_row_fits_k_quant_blocks():
    model = meta_model("1.5b")
    text = model.config.get_text_config()
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads,
            text.intermediate_size, text.tie_word_embeddings) == (1536, 28, 12, 2, 8960, True)
    hidden, kv, ffn = 1536, 2 * 128, 8960
    per_layer = (hidden * hidden + hidden) + 2 * (hidden * kv + kv) + hidden * hidden + 3 * hidden * ffn + 2 * hidden
    assert sum(p.numel() for p in model.model.language_model.layers.parameters()) == 28 * per_layer
    assert all(n % 256 == 0 for n in _row_lengths(model))  # q4_k_m is then q4_K/q6_K, as on the 7B
    assert all(n % 256 == 0 for n in _row_lengths(meta_model("7b", layers=1)))
    # why 1.5b exists: at 0.5b's hidden 896 most rows do not fit, and llama.cpp falls back to q5_0 / q8_0
    assert 896 in _row_lengths(meta_model("0.5b")) and 896 % 256 != 0


def test_storage_mix_counts_weights_not_norms(tmp_path):
    from n3d_ros.engine.runtimes.gguf_export import export_gguf
    from n3d_ros.engine.tiny import cached_tiny_checkpoint

    path = export_gguf(cached_tiny_checkpoint(), tmp_path / "tiny-f16.gguf", "f16")
    assert bench_runtimes.storage_mix(path) == "F16 100%"  # the f32 norms and biases are left out


def test_tiny_config_at_hidden_256_fits_k_quant_blocks_and_64_is_the_tests_model():
    from n3d_ros.engine.tiny import tiny_config

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(tiny_config(256), dtype=torch.float32)
    assert all(n % 256 == 0 for n in _row_lengths(model))
    assert model.config.vision_config.out_hidden_size == 256  # the merger feeds the language model's width
    text = tiny_config(256).get_text_config()
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2  # M-RoPE covers every rotary pair
    small = tiny_config().get_text_config()  # the default is the cached checkpoint every test loads
    assert (small.hidden_size, small.intermediate_size, small.rope_parameters["mrope_section"]) == (64, 128, [2, 3, 3])
    for bad in (100, 32):  # 32: sections of 0.5 pairs each; would build a model whose M-RoPE covers nothing
        with pytest.raises(ValueError, match="multiple of 64"):
            tiny_config(bad)


def test_box_speaker_loss_on_target_positions_equals_the_labels_loss():
    import random

    import tiny_box_speaker
    from n3d_ros.engine.model import load_engine
    from n3d_ros.engine.protocol.prompts import detection_text
    from n3d_ros.engine.tiny import cached_tiny_checkpoint
    from test_engine_speed import tiny_inputs

    engine = load_engine(str(cached_tiny_checkpoint()), device="cpu", dtype="float32")
    turn = engine.build_inputs(tiny_inputs(seed=0), detection_text())
    target = engine.tokenizer.encode(tiny_box_speaker.synthetic_answer(random.Random(0)), add_special_tokens=False)
    with torch.no_grad():
        cheap = tiny_box_speaker.answer_loss(engine, turn, target)
        full = tiny_box_speaker.answer_loss(engine, turn, target, full_logits=True)
        shifted = tiny_box_speaker.answer_loss(engine, turn, target[1:] + target[:1])  # another answer
    assert float(cheap) == pytest.approx(float(full), rel=1e-5)
    assert abs(float(shifted) - float(full)) > 1e-3  # the comparison can tell answers apart
