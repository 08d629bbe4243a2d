"""HiSpatial's point-map encoder and fused projector (hispatial-spec 3.1-3.3).

Per pixel of the [4, 448, 448] input: 192 sin/cos channels of the raw metric X, Y, Z (per axis 32 sines then
32 cosines, omega_k = 10000^(-k/32)) plus the raw mask = 193 channels -> Conv2d 14/14 to the vision width ->
1024 row-major tokens, aligned with the SigLIP patch tokens. The two streams are concatenated
[SigLIP | depth] and one Linear (2 x vision width -> text width) projects them. In transformers 5.x the raw
projector output is injected (the x sqrt(hidden) lives inside Gemma's embed_tokens).
"""

from __future__ import annotations

import torch
from torch import nn

FREQUENCIES = 32
EMBED_CHANNELS = 3 * 2 * FREQUENCIES + 1  # 193: sin/cos of X, Y, Z and the mask


def frequencies(device=None) -> torch.Tensor:
    """omega_k = 1 / 10000^(k / 32), k = 0..31, float32."""
    return 1.0 / (10000.0 ** (torch.arange(FREQUENCIES, dtype=torch.float32, device=device) / FREQUENCIES))


def xyz_embedding(xyz: torch.Tensor) -> torch.Tensor:
    """[B, 4, H, W] (X, Y, Z in metres, mask) -> [B, 193, H, W] float32 (channels of spec 3.1).

    Always float32: in bf16 the angles X * omega lose the bits the sines depend on."""
    if xyz.ndim != 4 or xyz.shape[1] != 4:
        raise ValueError(f"xyz must be [B, 4, H, W], got {tuple(xyz.shape)}")
    xyz = xyz.to(torch.float32)
    omega = frequencies(xyz.device)[None, :, None, None]
    channels = []
    for axis in range(3):
        angles = xyz[:, axis:axis + 1] * omega  # [B, 32, H, W]
        channels += [torch.sin(angles), torch.cos(angles)]
    channels.append(xyz[:, 3:4])
    return torch.cat(channels, dim=1)


class DepthEncoder(nn.Module):
    """``depth_encoder.conv`` of the checkpoint: Conv2d(193, vision width, patch, stride patch), no norm."""

    def __init__(self, hidden_size: int, patch_size: int):
        super().__init__()
        self.conv = nn.Conv2d(EMBED_CHANNELS, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """[B, 4, H, W] -> [B, (H/p)*(W/p), hidden] tokens in row-major order."""
        embedded = xyz_embedding(xyz).to(self.conv.weight.dtype)
        return self.conv(embedded).flatten(2).transpose(1, 2)


def fused_image_features(network, pixel_values: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """[B, 1024, text width] image-token embeddings: project([SigLIP last_hidden_state | depth tokens])."""
    inner = network.model
    vision = inner.vision_tower(pixel_values.to(inner.vision_tower.dtype)).last_hidden_state
    depth = inner.depth_encoder(xyz)
    if vision.shape != depth.shape:
        raise ValueError(f"SigLIP tokens {tuple(vision.shape)} and depth tokens {tuple(depth.shape)} differ: the "
                         "point map must be 448x448 like the image")
    return inner.multi_modal_projector(torch.cat([vision, depth.to(vision.dtype)], dim=-1))
