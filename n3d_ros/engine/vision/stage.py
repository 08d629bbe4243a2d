"""The vision stage: frame -> image embeddings (vision tower + 3D encoding + merger) and M-RoPE positions.

This is all of N3D-VLM that is not a stock language model, so it stays in torch whatever runtime runs the
language model. Both functions reproduce what ``Qwen2_5_VLModel.forward`` does inside one prefill call
(``get_image_features`` and ``get_rope_index``), so feeding their outputs to a runtime equals the stock path.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch

from ..runtimes.base import image_token_span


@torch.inference_mode()
def image_embeddings(model, hook, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor,
                     points: torch.Tensor, map_hw, grid_hw) -> torch.Tensor:
    """(n_image_tokens, text hidden) merger output with the 3D encoding added at the merger input.

    model: a Qwen2_5_VLForConditionalGeneration (only its ``model.visual`` runs); hook: its PointEncodingHook.
    """
    hook.arm(points, map_hw, grid_hw)
    applied = hook.applied
    try:
        out = model.model.get_image_features(pixel_values, image_grid_thw, return_dict=True)
    finally:
        hook.disarm()
    if hook.applied != applied + 1:
        raise RuntimeError(f"the 3D encoding ran {hook.applied - applied} times for one image, not once")
    return torch.cat(out.pooler_output, dim=0)


def mrope_positions(ids: Sequence[int], image_token_id: int, grid_hw: Tuple[int, int],
                    merge_size: int) -> Tuple[np.ndarray, int]:
    """((3, P) int64 temporal/height/width positions, rope delta) for a prompt with at most one image.

    Text tokens count up on all three streams; the image's merged tokens (raster order) sit at
    (s, s + row, s + col) for the image's start s; text after the image continues at s + max(rows, cols).
    The delta is "position of the next text token" minus "its index", which every later token keeps.
    """
    n = len(ids)
    start, end = image_token_span(ids, image_token_id)
    rows, cols = grid_hw[0] // merge_size, grid_hw[1] // merge_size
    if end - start not in (0, rows * cols):
        raise ValueError(f"prompt has {end - start} image-pad ids but the image grid gives {rows}x{cols}")
    positions = np.empty((3, n), dtype=np.int64)
    positions[:, :start] = np.arange(start)
    if end == start:
        positions[:, start:] = np.arange(start, n)
        return positions, 0
    r, c = np.divmod(np.arange(rows * cols), cols)
    positions[0, start:end] = start
    positions[1, start:end] = start + r
    positions[2, start:end] = start + c
    after = start + max(rows, cols)
    positions[:, end:] = after + np.arange(n - end)
    return positions, after - end
