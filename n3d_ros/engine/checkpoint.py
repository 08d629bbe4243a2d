"""The files of a Qwen2.5-VL / N3D-VLM checkpoint, read tensor by tensor.

Used where only part of a checkpoint is wanted: the GGUF export reads the language model, and a runtime other
than transformers loads the vision tower alone (the language model then never enters torch memory, which is
what lets a 16 GB Jetson run the 7B model from a 4-bit GGUF).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

from ..core.types import InputError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# Checkpoints name the vision tower "visual." (Qwen's layout, what transformers writes back) or
# "model.visual." (transformers' in-memory layout): both map to the tower's own keys.
VISION_PREFIXES = ("model.visual.", "visual.")


def _local_file(source: str, name: str, local_files_only: bool) -> Optional[Path]:
    """``name`` in a checkpoint directory, or in the Hugging Face cache for a hub id (downloaded if allowed)."""
    directory = Path(source).expanduser()
    if directory.is_dir():
        path = directory / name
        return path if path.is_file() else None
    from transformers.utils import cached_file

    path = cached_file(source, name, local_files_only=local_files_only,
                       _raise_exceptions_for_missing_entries=False)
    return Path(path) if path else None


def safetensor_shards(source: str, local_files_only: bool = True) -> Dict[str, Path]:
    """{tensor key: shard file} of a checkpoint, from its index (sharded) or its one model.safetensors."""
    index = _local_file(source, INDEX, local_files_only)
    if index is not None:
        weight_map = json.loads(index.read_text())["weight_map"]
        files = {name: _local_file(source, name, local_files_only) for name in sorted(set(weight_map.values()))}
        missing = sorted(name for name, path in files.items() if path is None)
        if missing:
            raise InputError(f"checkpoint {source} lists shards it does not have: {missing}")
        return {key: files[name] for key, name in weight_map.items()}
    single = _local_file(source, SINGLE, local_files_only)
    if single is None:
        raise InputError(f"no {SINGLE} (or {INDEX}) in {source}: point the model setting at a checkpoint directory")
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as handle:
        return {key: single for key in handle.keys()}


def safetensor_files(source: str, local_files_only: bool = True) -> List[Path]:
    """The checkpoint's safetensors files, each once, in a stable order."""
    return sorted(set(safetensor_shards(source, local_files_only).values()))


def vision_tower_state(source: str, local_files_only: bool = True) -> Dict[str, "object"]:
    """The vision tower's tensors, keyed as the tower names them ("blocks.0.attn.qkv.weight"), nothing else read."""
    from safetensors import safe_open

    by_file: Dict[Path, List[str]] = {}
    for key, path in safetensor_shards(source, local_files_only).items():
        if key.startswith(VISION_PREFIXES):
            by_file.setdefault(path, []).append(key)
    if not by_file:
        raise InputError(f"checkpoint {source} has no vision-tower tensors (keys starting with {VISION_PREFIXES})")
    state = {}
    for path, keys in sorted(by_file.items()):
        with safe_open(str(path), framework="pt") as handle:
            absent = sorted(set(keys) - set(handle.keys()))
            if absent:
                raise InputError(f"checkpoint {source}: its index puts {absent[:3]} in {path.name}, which lacks them")
            for key in keys:
                short = next(key[len(p):] for p in VISION_PREFIXES if key.startswith(p))
                if short in state:
                    raise InputError(f"checkpoint {source} has the vision tensor {short!r} under both prefixes")
                state[short] = handle.get_tensor(key)
    return state
