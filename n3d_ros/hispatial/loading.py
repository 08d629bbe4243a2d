"""Load a HiSpatial checkpoint: the published layout of lhzzzzzy/HiSpatial-3B (hispatial-spec 6).

A checkpoint directory holds config.json (a PaliGemmaConfig), the PaliGemma processor and tokenizer files and
weights.pt: the reference model's full state_dict in transformers 4.50 naming. weights.safetensors with the
same keys is accepted too (convert once: it loads memory-mapped and without pickle). Keys are mapped to the
5.x module layout (KEY_MAP) and loaded strictly: a missing, unexpected or misshaped tensor is an error naming
it, so a plain PaliGemma or an N3D checkpoint is refused instead of running with random layers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

from ..core.types import InputError
from .model import DEFAULT_MAX_NEW_TOKENS, HiSpatialEngine, build_network, check_config

DEFAULT_MODEL = "lhzzzzzy/HiSpatial-3B"
WEIGHT_FILES = ("weights.safetensors", "weights.pt")
DTYPES = ("float32", "bfloat16", "float16")
# 4.50 prefix -> 5.x prefix (spec 6.2), longest first
KEY_MAP: Tuple[Tuple[str, str], ...] = (
    ("vision_tower.vision_model.", "model.vision_tower."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
    ("depth_encoder.", "model.depth_encoder."),
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
)


class ModelNotFound(InputError):
    """The checkpoint is not where the ``model`` setting points."""


def _not_found(model: str, reason: str) -> ModelNotFound:
    return ModelNotFound(
        f"HiSpatial checkpoint not found for model={model!r} ({reason}). Download it once with "
        f"`huggingface-cli download {DEFAULT_MODEL} --local-dir ~/models/HiSpatial-3B` and set the `model` "
        "parameter to that directory, or allow downloads (allow_download / --allow-download).")


def to_v5_key(key: str) -> str:
    for old, new in KEY_MAP:
        if key.startswith(old):
            return new + key[len(old):]
    raise InputError(f"unexpected weight {key!r}: not a HiSpatial weights.pt (keys start with "
                     f"{[old for old, _ in KEY_MAP]})")


def to_v450_key(key: str) -> str:
    """The inverse map, for writing checkpoints in the published layout (tiny.py)."""
    for old, new in KEY_MAP:
        if key.startswith(new):
            return old + key[len(new):]
    raise ValueError(f"no 4.50 name for {key!r}")


def resolve_checkpoint(model: str, allow_download: bool = False) -> Path:
    """A local directory as is; a hub id from the local cache (downloaded only if allow_download)."""
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        if not (path / "config.json").is_file():
            raise _not_found(model, f"no config.json in {path}")
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=not allow_download))
    except Exception as exc:  # huggingface_hub raises several unrelated types for "not cached"/"offline"
        raise _not_found(model, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


def read_weights(directory: Path) -> Dict[str, object]:
    for name in WEIGHT_FILES:
        path = directory / name
        if path.is_file():
            break
    else:
        raise InputError(f"{directory} has none of {WEIGHT_FILES}: not a HiSpatial checkpoint (a plain "
                         "PaliGemma has no depth encoder)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    try:  # memory-mapped: the fp32 file (~12 GB) stays in the page cache, not in our heap
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an old (non-zip) torch.save format cannot be memory-mapped
        return torch.load(str(path), map_location="cpu", weights_only=True)


def load_state(network, state: Dict[str, object]) -> None:
    """Copy the 4.50-named tensors into the 5.x network, strictly."""
    import torch

    mapped = {to_v5_key(k): v for k, v in state.items()}
    target = network.state_dict()
    tied = network.lm_head.weight.data_ptr() == network.model.language_model.embed_tokens.weight.data_ptr()
    if tied:
        mapped.pop("lm_head.weight", None)  # tied to embed_tokens (spec 6.2): one copy is loaded
        target.pop("lm_head.weight", None)
    missing = sorted(set(target) - set(mapped))
    unexpected = sorted(set(mapped) - set(target))
    wrong = sorted(f"{k}: file {tuple(mapped[k].shape)}, model {tuple(target[k].shape)}"
                   for k in set(mapped) & set(target) if tuple(mapped[k].shape) != tuple(target[k].shape))
    if missing or unexpected or wrong:
        raise InputError("weights do not fit the HiSpatial architecture of config.json: "
                         + "; ".join(f"{name} {items[:5]}{' ...' if len(items) > 5 else ''}"
                                     for name, items in (("missing", missing), ("unexpected", unexpected),
                                                         ("misshaped", wrong)) if items))
    with torch.no_grad():
        for key, value in mapped.items():
            target[key].copy_(value)


def load_hispatial(model: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "float32",
                   max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, allow_download: bool = False) -> HiSpatialEngine:
    """The engine for a local checkpoint directory or a hub id. float32 is the reference; bf16 halves memory
    (the point-map embedding is computed in float32 either way)."""
    import torch
    from transformers import AutoTokenizer, PaliGemmaConfig
    from transformers.initialization import no_init_weights
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    from ..engine.model import resolve_device

    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    device = resolve_device(device)
    directory = resolve_checkpoint(model, allow_download)
    try:
        model_type = json.loads((directory / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise InputError(f"{directory}/config.json cannot be read: {exc}") from exc
    if model_type != "paligemma":  # before parsing: another model's config does not parse as PaliGemma's
        raise InputError(f"{directory} holds a {model_type!r} model; HiSpatial needs a paligemma config.json "
                         f"(is this the {DEFAULT_MODEL} checkpoint?)")
    try:
        config = PaliGemmaConfig.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        raise InputError(f"{directory}/config.json is not a PaliGemma config: {str(exc).splitlines()[0]}") from exc
    check_config(config, str(directory))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        processor = SiglipImageProcessorPil.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        raise InputError(f"{directory} lacks the PaliGemma tokenizer/processor files: "
                         f"{str(exc).splitlines()[0]}") from exc
    if tuple(processor.size.get(k) for k in ("height", "width")) != (448, 448):
        raise InputError(f"preprocessor_config.json size {processor.size} is not 448x448")
    state = read_weights(directory)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # build in the target dtype: no fp32 copy of 3B weights
    try:
        with no_init_weights():
            network = build_network(config)
    finally:
        torch.set_default_dtype(previous)
    network.tie_weights()
    load_state(network, state)
    del state
    network.to(device).eval()
    return HiSpatialEngine(network, tokenizer, processor, max_new_tokens=max_new_tokens, source=str(directory))
