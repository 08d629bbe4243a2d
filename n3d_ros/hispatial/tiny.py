"""A tiny random-weight HiSpatial checkpoint in the published layout, for tests, demos and benchmarks offline.

Same architecture and files as lhzzzzzy/HiSpatial-3B: a PaliGemmaConfig (448-px SigLIP with 14-px patches, so
1024 image tokens; Gemma2 text model with soft-capping, alternating sliding/full layers), the depth encoder and
the [SigLIP | depth] projector, weights.pt in transformers 4.50 naming, the SigLIP preprocessor config and a
tokenizer. What is tiny: widths and depths, and the tokenizer (tokenizer.py: a 640-piece SentencePiece model
with PaliGemma's special tokens, because Gemma's own is not available offline). Random weights answer
nonsense; the code path is the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..engine.protocol.tokenizer import cached_directory

PREPROCESSOR_CONFIG = {  # google/paligemma2-3b-mix-448's values (spec 1.2)
    "image_processor_type": "SiglipImageProcessor",
    "processor_class": "PaliGemmaProcessor",
    "do_resize": True, "size": {"height": 448, "width": 448}, "resample": 3,
    "do_rescale": True, "rescale_factor": 1 / 255,
    "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "do_convert_rgb": None, "image_seq_length": 1024,
}


def tiny_config(vocab_size: int, image_token_id: int):
    from transformers import PaliGemmaConfig

    return PaliGemmaConfig(
        vision_config={
            "model_type": "siglip_vision_model", "hidden_size": 48, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "patch_size": 14, "image_size": 448,
            "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "vision_use_head": False,
        },
        text_config={
            "model_type": "gemma2", "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "query_pre_attn_scalar": 16, "hidden_activation": "gelu_pytorch_tanh",
            "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "sliding_window": 4096,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "pad_token_id": 0, "eos_token_id": [1],
            "bos_token_id": 2,
        },
        image_token_index=image_token_id, projection_dim=64, bos_token_id=2, eos_token_id=1, pad_token_id=0,
    )


def build_tiny_checkpoint(out_dir, seed: int = 0) -> Path:
    """Write the checkpoint into out_dir (created; files overwritten) and return it."""
    import torch

    from .loading import to_v450_key
    from .model import build_network
    from .tokenizer import IMAGE_TOKEN, gemma_tokenizer_from_sentencepiece, train_sentencepiece

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    proto = train_sentencepiece()
    tokenizer = gemma_tokenizer_from_sentencepiece(proto)
    vocab = len(tokenizer) + 8  # padded past <image>, as the real 257216 rows are
    config = tiny_config(vocab, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    torch.manual_seed(seed)
    network = build_network(config).eval()
    with torch.no_grad():  # the depth half of a fresh projector is random too, so the point map matters
        network.model.depth_encoder.conv.weight.normal_(0.0, 0.05)
    state = {to_v450_key(k): v.contiguous() for k, v in network.state_dict().items()}
    torch.save(state, out / "weights.pt")
    config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / "tokenizer.model").write_bytes(proto)  # the SentencePiece model it was converted from
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
    return out


def cached_tiny_checkpoint(seed: int = 0) -> Path:
    """The tiny checkpoint under the cache directory, built on first use (a few seconds)."""
    return cached_directory(f"tiny_hispatial_seed{seed}", "preprocessor_config.json",
                            lambda tmp: build_tiny_checkpoint(tmp, seed))
