"""The transformers runtime: the stock Qwen2.5-VL language model with a DynamicCache (today's code path).

The prefill feeds the embeddings (token embeddings with the image embeddings scattered in, as
``Qwen2_5_VLModel.forward`` does) and the 3D positions; later steps feed token ids and let the model place
them at "cache length + rope_deltas", which is why the delta travels with the prefix.
"""

from __future__ import annotations

from typing import Hashable, Optional, Sequence

import numpy as np
import torch

from .base import DecodeStats, ImagePrefix, LanguageRuntime


class TransformersRuntime(LanguageRuntime):
    name = "transformers"

    def __init__(self, model):
        self.model = model
        self._cache = None  # the working cache: the restored prefix's own cache, cropped back after a question

    @property
    def device(self):
        return self.model.device

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.get_text_config().vocab_size)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    @torch.inference_mode()
    def prefill(self, key: Hashable, ids: torch.Tensor, image_embeds: Optional[torch.Tensor],
                positions: np.ndarray, stats: DecodeStats) -> ImagePrefix:
        from transformers import DynamicCache

        ids = ids.to(self.device)
        embeds = self.model.get_input_embeddings()(ids)
        mask = ids == int(self.model.config.image_token_id)
        if image_embeds is not None:
            if int(mask.sum()) != image_embeds.shape[0]:
                raise ValueError(f"{int(mask.sum())} image-pad ids but {image_embeds.shape[0]} image embeddings")
            image_embeds = image_embeds.to(embeds.device, embeds.dtype)
            embeds = embeds.masked_scatter(mask[..., None].expand_as(embeds), image_embeds)
        position_ids = torch.as_tensor(positions, dtype=torch.long, device=self.device)[:, None, :]
        cache = DynamicCache(config=self.model.config.get_text_config())
        out = self.model(inputs_embeds=embeds, position_ids=position_ids, past_key_values=cache, use_cache=True,
                         logits_to_keep=1)  # only the last row is used: skips a (P x vocab) matmul
        stats.forward_passes += 1
        stats.forward_tokens += int(ids.shape[1])
        stats.prefill_tokens += int(ids.shape[1])
        delta = int(positions.max()) + 1 - int(ids.shape[1])
        rope_deltas = torch.tensor([[delta]], dtype=torch.long, device=self.device)
        prefix = ImagePrefix(key=key, ids=ids.clone(), cache=cache, rope_deltas=rope_deltas,
                             first_logits=out.logits[0, -1].float())
        self.restore(prefix)
        return prefix

    def restore(self, prefix: ImagePrefix) -> None:
        # text positions after the image = 1D position + rope_deltas (the model reads it on every step)
        self.model.model.rope_deltas = prefix.rope_deltas
        self._cache = prefix.cache
        self.truncate(prefix.length)

    @torch.inference_mode()
    def forward(self, ids: Sequence[int], last_only: bool = False) -> torch.Tensor:
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device).reshape(1, -1)
        keep = {"logits_to_keep": 1} if last_only else {}
        out = self.model(input_ids=ids, past_key_values=self._cache, use_cache=True, **keep)
        return out.logits[0].float()

    def truncate(self, length: int) -> None:
        extra = self._cache.get_seq_length() - length
        if extra > 0:
            self._cache.crop(-extra)  # crop takes a negative count: drop that many from the end

    def length(self) -> int:
        return int(self._cache.get_seq_length())
