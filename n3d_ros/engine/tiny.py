"""A tiny random-weight Qwen2.5-VL checkpoint with the real tokenizer, for tests, demos and benchmarks offline.

It is a complete checkpoint directory, loaded by the same ``load_engine`` code as ``yuxinhk/N3D-VLM``: stock
``qwen2_5_vl`` config, safetensors weights, tokenizer files, preprocessor and generation configs. What is tiny
is the language model (2 layers, hidden 64) and the vision depth (2 blocks: one windowed, one full attention,
so the window permutation the 3D encoding depends on is exercised). The vision width stays 1280 because the
encoding hard-codes it. Random weights answer nonsense; the code path is the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

from .protocol.tokenizer import cached_directory, offline_qwen_tokenizer

# Mirrors Qwen2.5-VL-7B-Instruct's generation_config.json except for the sampling values, which are the
# N3D demo's (spec 4.6): repetition_penalty and the two EOS ids are what a real checkpoint adds.
GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "eos_token_id": [151645, 151643],
    "do_sample": True,
    "temperature": 0.6,
    "top_p": 0.95,
    "top_k": 10,
    "repetition_penalty": 1.05,
}
PREPROCESSOR_CONFIG = {  # stock Qwen2.5-VL values (spec 1.1)
    "image_processor_type": "Qwen2VLImageProcessor",
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_resize": True,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "do_convert_rgb": True,
    "resample": 3,
}


def tiny_config(hidden: int = 64):
    """hidden 64: the tests' model. hidden 256 (a multiple of llama.cpp's 256-wide k-quant blocks, like every
    row of the 7B) is what the quantised-box measurement uses, so that q4_k_m is stored as q4_K / q6_K."""
    from transformers import Qwen2_5_VLConfig

    # 4 heads: head_dim / 2 = hidden / 8 rotary pairs, split 2:3:3 among M-RoPE's (t, h, w) sections as stock
    if hidden % 64:
        raise ValueError(f"tiny hidden size must be a multiple of 64 (M-RoPE splits hidden / 8 pairs 2:3:3), got {hidden}")
    unit = hidden // 64
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 152064, "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-6, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                                      "mrope_section": [2 * unit, 3 * unit, 3 * unit]},
            "bos_token_id": 151643, "eos_token_id": 151645, "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2, "hidden_size": 1280, "intermediate_size": 256, "num_heads": 16, "out_hidden_size": hidden,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [1], "hidden_act": "silu",
        },
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=True,
    )


def build_tiny_checkpoint(out_dir, seed: int = 0, hidden: int = 64) -> Path:
    """Write the checkpoint into out_dir (created; files overwritten) and return it."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_config(hidden)).eval()
    model.save_pretrained(str(out))
    offline_qwen_tokenizer().save_pretrained(str(out))
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
    return out


def cached_tiny_checkpoint(seed: int = 0, hidden: int = 64) -> Path:
    """The tiny checkpoint under the cache directory, built on first use (a few seconds)."""
    name = f"tiny_qwen2_5_vl_seed{seed}" if hidden == 64 else f"tiny_qwen2_5_vl_h{hidden}_seed{seed}"
    return cached_directory(name, "generation_config.json", lambda tmp: build_tiny_checkpoint(tmp, seed, hidden))
