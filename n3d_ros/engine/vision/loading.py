"""A Qwen2.5-VL model object that holds only its vision tower: for runtimes that run the language model.

The vision stage calls ``model.model.visual`` (with the 3D encoding hooked on its merger) and reads the
model's config; nothing else. So the model is built on the meta device (no memory), its language model and
output layer are removed, and the vision tower alone is built on the real device and filled strictly from
the checkpoint's vision tensors. Building the tower with its own constructor (not ``to_empty``) keeps its
computed buffers, such as the rotary inverse frequencies, which are not in the checkpoint.
"""

from __future__ import annotations

from ...core.types import InputError
from ..checkpoint import vision_tower_state


def vision_only_model(source: str, config, dtype, device, local_files_only: bool = True):
    """Qwen2_5_VLForConditionalGeneration with ``model.visual`` loaded and no language model (None)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.initialization import no_init_weights

    with torch.device("meta"):
        network = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    tower_class = type(network.model.visual)
    network.model.language_model = None
    network.lm_head = None
    # Random initialisation is skipped (the checkpoint overwrites every weight) and the weights are assigned,
    # not copied, so the tower is in memory once.
    with torch.device(device), no_init_weights():
        tower = tower_class._from_config(config.vision_config, dtype=dtype)
    state = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
             for k, v in vision_tower_state(source, local_files_only).items()}
    expected = set(tower.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise InputError(f"the vision tower of {source} does not fit Qwen2.5-VL's: missing {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{' ...' if len(unexpected) > 5 else ''}")
    with torch.no_grad():
        tower.load_state_dict(state, strict=True, assign=True)
    del state
    network.model.visual = tower.eval()
    return network
