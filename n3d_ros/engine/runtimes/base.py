"""The small interface a language-model runtime implements for the N3D engine.

One working sequence per runtime. A question on a frame goes:

    prefix = runtime.prefill(key, ids, image_embeds, positions, stats)   # once per frame
    runtime.restore(prefix)            # the working sequence is now exactly the prefix
    logits = runtime.forward([...])    # append 1..k tokens, logits (k, V) for each of them
    runtime.truncate(n)                # drop appended tokens past n (a rejected draft)
    runtime.restore(prefix)            # back to the prefix for the next question

``prefill`` returns an :class:`ImagePrefix`, the snapshot of the prefix state: its ``cache`` is whatever the
runtime needs to restore it (a transformers DynamicCache, a llama.cpp sequence snapshot). Text tokens after
the prefix sit at M-RoPE position "index + rope_delta" on all three streams (the image is shorter in
positions than in tokens), so a runtime only needs the prefix's delta to place them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Hashable, Optional, Sequence

import numpy as np
import torch


@dataclass
class DecodeStats:
    """What the model was asked to do: forward passes and tokens fed, tokens produced and how."""

    prefill_tokens: int = 0
    cached_prefix_tokens: int = 0
    forward_passes: int = 0
    forward_tokens: int = 0
    generated_tokens: int = 0
    drafted_tokens: int = 0
    accepted_draft_tokens: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ImagePrefix:
    """The state after the shared prompt prefix of one frame (system + user header + image tokens)."""

    key: Hashable
    ids: torch.Tensor  # (1, P)
    cache: object  # the runtime's snapshot of the prefix state
    rope_deltas: torch.Tensor  # (1, 1): M-RoPE position of a later text token minus its index
    first_logits: torch.Tensor = field(repr=False, default=None)  # (V,) float32 after the last prefix token

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])

    @property
    def rope_delta(self) -> int:
        return int(self.rope_deltas.reshape(-1)[0])


class LanguageRuntime(ABC):
    """A language model that takes image embeddings and M-RoPE positions and returns float32 logits."""

    name = "runtime"

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Rows of the output layer (Qwen pads it past the tokenizer: 152064 vs 151665)."""

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """Width of an input embedding; image embeddings must have it."""

    @abstractmethod
    def prefill(self, key: Hashable, ids: torch.Tensor, image_embeds: Optional[torch.Tensor],
                positions: np.ndarray, stats: DecodeStats) -> ImagePrefix:
        """Run ids (1, P) with image_embeds (n_image, hidden) at the image-pad ids and positions (3, P).

        Returns the prefix snapshot; the working sequence is left holding exactly the prefix.
        """

    @abstractmethod
    def restore(self, prefix: ImagePrefix) -> None:
        """Make the working sequence exactly ``prefix`` (whatever was appended or prefilled since)."""

    @abstractmethod
    def forward(self, ids: Sequence[int], last_only: bool = False) -> torch.Tensor:
        """Append ids after the working sequence; logits (len(ids), V) float32, one row per id.

        last_only: only the last id's row, (1, V). A prompt segment needs no more, and skipping the output
        layer for the other rows saves a (len(ids) x vocab) matmul and its copy (turn 2 feeds hundreds).
        """

    @abstractmethod
    def truncate(self, length: int) -> None:
        """Keep the first ``length`` tokens of the working sequence."""

    @abstractmethod
    def length(self) -> int:
        """Tokens in the working sequence."""

    def close(self) -> None:
        """Free what the runtime holds (the engine calls it once)."""


def image_token_span(ids: Sequence[int], image_token_id: int) -> tuple:
    """(start, end) of the one contiguous run of image-pad ids; the engine feeds one image per prompt."""
    ids = np.asarray(ids)
    where = np.flatnonzero(ids == image_token_id)
    if where.size == 0:
        return 0, 0
    start, end = int(where[0]), int(where[-1]) + 1
    if end - start != where.size:
        raise ValueError(f"image-pad ids are not contiguous ({where.size} ids in [{start}, {end}))")
    return start, end
