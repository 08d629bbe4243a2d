"""Write the language model of a Qwen2.5-VL / N3D-VLM checkpoint as a GGUF file for llama.cpp.

Only the language model goes in (architecture ``qwen2vl``: llama.cpp's Qwen2 with M-RoPE); the vision tower
and the 3D encoding stay in torch. Weights are read one tensor at a time from the safetensors files and
streamed to the file, so a 7B export needs about one tensor of extra memory, not the model twice.
f32 / f16 are written by the ``gguf`` package; q8_0 / q4_k_m are quantised from an f16 (f32 for a float32
checkpoint) file by llama.cpp's own ``llama_model_quantize``.

The vocabulary (byte-level BPE tokens, merges, special-token types) goes in too: the runtime feeds token ids,
but llama.cpp refuses a model without one, and its length is the output width the runtime checks.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np

from ...core.types import InputError
from ..checkpoint import VISION_PREFIXES, safetensor_files
from . import optional_import

ARCH = "qwen2vl"
QUANTS = ("f32", "f16", "q8_0", "q4_k_m")
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_LAYER_KEY = re.compile(r"model\.layers\.(\d+)\.(.+)")
# llama.cpp's token types (llama_token_type): what the vocabulary says each id is.
_NORMAL, _CONTROL, _USER_DEFINED, _UNUSED = 1, 3, 4, 5


def gguf_name(hf_key: str) -> "str | None":
    """The GGUF tensor name of a language-model key (either checkpoint layout), or None for vision keys."""
    key = hf_key.replace("model.language_model.", "model.", 1)
    if key.startswith(VISION_PREFIXES):
        return None
    if key == "model.embed_tokens.weight":
        return "token_embd.weight"
    if key == "model.norm.weight":
        return "output_norm.weight"
    if key == "lm_head.weight":
        return "output.weight"
    match = _LAYER_KEY.fullmatch(key)
    if match and match.group(2) in _LAYER_NAMES:
        return f"blk.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    raise InputError(f"checkpoint tensor {hf_key!r} is not part of a Qwen2.5-VL language model")


def _language_tensors(model_dir: Path, tied: bool) -> Iterator[Tuple[str, str, Tuple[int, ...], "object"]]:
    """(gguf name, hf key, shape, loader) of every language-model tensor; loading is deferred.

    Each shard is opened once here, for the shapes (header only); a loader opens its shard again when the
    writer asks for that tensor's data, so only one tensor at a time is in memory."""
    from safetensors import safe_open

    for path in safetensor_files(str(model_dir)):
        with safe_open(str(path), framework="pt") as handle:
            entries = []
            for key in handle.keys():
                name = gguf_name(key)
                if name is None or (tied and name == "output.weight"):
                    continue  # tied: llama.cpp reuses token_embd as the output layer
                entries.append((name, key, tuple(handle.get_slice(key).get_shape())))
        for name, key, shape in entries:
            def load(path=path, key=key):
                with safe_open(str(path), framework="pt") as h:
                    return h.get_tensor(key)

            yield name, key, shape, load


def _looks_special(text: str) -> bool:
    """What llama.cpp's loader treats as a control token anyway (it warns and overrides the type)."""
    return (text.startswith("<|") and text.endswith("|>")) or text in ("</s>", "<s>", "<unk>", "<pad>", "<mask>")


def _vocabulary(model_dir: Path, vocab_size: int) -> Tuple[List[str], List[int], List[str]]:
    """(tokens, types, merges) padded to the model's vocab size with unused [PAD{i}] tokens."""
    tok_path = model_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise InputError(f"no tokenizer.json in {model_dir}: the GGUF carries the vocabulary")
    data = json.loads(tok_path.read_text(encoding="utf-8"))
    if data["model"]["type"] != "BPE":
        raise InputError(f"{tok_path} is a {data['model']['type']} tokenizer; Qwen2.5-VL uses byte-level BPE")
    by_id: Dict[int, Tuple[str, int]] = {i: (t, _NORMAL) for t, i in data["model"]["vocab"].items()}
    for added in data.get("added_tokens", []):
        special = added.get("special") or _looks_special(added["content"])
        by_id[int(added["id"])] = (added["content"], _CONTROL if special else _USER_DEFINED)
    for i, (text, kind) in list(by_id.items()):
        if kind == _NORMAL and _looks_special(text):
            by_id[i] = (text, _CONTROL)
    if max(by_id) >= vocab_size:
        raise InputError(f"tokenizer has id {max(by_id)} but the model's vocab_size is {vocab_size}")
    tokens = [by_id.get(i, (f"[PAD{i}]", _UNUSED))[0] for i in range(vocab_size)]
    types = [by_id.get(i, ("", _UNUSED))[1] for i in range(vocab_size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return tokens, types, merges


def _text_config(model_dir: Path) -> dict:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise InputError(f"no config.json in {model_dir}: point --model at a Qwen2.5-VL / N3D-VLM checkpoint directory")
    config = json.loads(config_path.read_text())
    if config.get("model_type") != "qwen2_5_vl":
        raise InputError(f"{model_dir} is a {config.get('model_type')!r} model; export-gguf takes qwen2_5_vl checkpoints")
    text = dict(config.get("text_config") or {})
    for key, value in config.items():  # 4.x checkpoints keep the text settings at the top level
        text.setdefault(key, value)
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    text["mrope_section"] = list(rope.get("mrope_section") or [16, 24, 24])
    text["rope_theta"] = float(rope.get("rope_theta", text.get("rope_theta", 1000000.0)))
    text["tied"] = bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))
    return text


def write_gguf(model_dir: Path, out: Path, dtype: str) -> Path:
    """Write the language model at f32 or f16 (2-D weights; norms and biases stay f32, as llama.cpp wants)."""
    import torch

    gguf = optional_import("gguf", "n3d export-gguf")

    if dtype not in ("f32", "f16"):
        raise ValueError(f"write_gguf writes f32 or f16, got {dtype!r}")
    text = _text_config(model_dir)
    tokens, types, merges = _vocabulary(model_dir, int(text["vocab_size"]))
    writer = gguf.GGUFWriter(str(out), ARCH)
    writer.add_name(model_dir.name)
    writer.add_context_length(int(text["max_position_embeddings"]))
    writer.add_embedding_length(int(text["hidden_size"]))
    writer.add_block_count(int(text["num_hidden_layers"]))
    writer.add_feed_forward_length(int(text["intermediate_size"]))
    writer.add_head_count(int(text["num_attention_heads"]))
    writer.add_head_count_kv(int(text["num_key_value_heads"]))
    writer.add_rope_freq_base(text["rope_theta"])
    writer.add_layer_norm_rms_eps(float(text["rms_norm_eps"]))
    writer.add_rope_dimension_sections(text["mrope_section"] + [0] * (4 - len(text["mrope_section"])))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(int(text.get("eos_token_id") or 151645))
    writer.add_pad_token_id(151643)  # <|endoftext|>, as the Qwen checkpoints pad
    writer.add_add_bos_token(False)

    plan = []
    for name, key, shape, load in _language_tensors(model_dir, text["tied"]):
        np_dtype = np.float16 if (dtype == "f16" and len(shape) == 2) else np.float32
        writer.add_tensor_info(name, shape, np.dtype(np_dtype), int(np.prod(shape)) * np.dtype(np_dtype).itemsize)
        plan.append((load, np_dtype))
    if not any(name == "token_embd.weight" for name in writer.tensors[-1]):
        raise InputError(f"{model_dir} has no language-model embedding (model.embed_tokens.weight)")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for load, np_dtype in plan:  # same order as the tensor infos
        writer.write_tensor_data(load().to(torch.float32).numpy().astype(np_dtype, copy=False))
    writer.close()
    return out


def quantize(src: Path, out: Path, quant: str, threads: int = 0) -> Path:
    """llama.cpp's quantiser (k-quants fall back per tensor where a row is not a multiple of 256)."""
    import llama_cpp

    ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[quant]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or (os.cpu_count() or 1)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {out}, {quant}) failed with code {rc}")
    return out


def export_gguf(model_dir, out, quant: str = "f16") -> Path:
    """The whole export: f32 / f16 directly, q8_0 / q4_k_m through a temporary f16 (or f32) file."""
    model_dir, out = Path(model_dir).expanduser(), Path(out).expanduser()
    if quant not in QUANTS:
        raise InputError(f"quant must be one of {list(QUANTS)}, got {quant!r}")
    if not model_dir.is_dir():
        raise InputError(f"--model {model_dir} is not a directory; download the checkpoint first "
                         "(huggingface-cli download yuxinhk/N3D-VLM --local-dir ~/models/N3D-VLM)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if quant in ("f32", "f16"):
        return write_gguf(model_dir, out, quant)
    optional_import("llama_cpp", f"--quant {quant} (llama.cpp's quantiser; f32 and f16 exports do not)")
    # q8_0 from f16 is what llama.cpp users do; a float32 checkpoint (the tiny test model) goes through f32
    # so that the quantised file differs from the f32 export only by the quantisation.
    torch_dtype = str(_text_config(model_dir).get("torch_dtype") or _text_config(model_dir).get("dtype") or "")
    base = "f32" if "float32" in torch_dtype else "f16"
    with tempfile.TemporaryDirectory(dir=str(out.parent)) as tmp:
        staged = write_gguf(model_dir, Path(tmp) / f"staged-{base}.gguf", base)
        return quantize(staged, out, quant)
