"""Decoding without waste: a reusable image prefix and grammar-constrained, jump-forward box decoding.

Two facts drive this module (see the README's speed section):
* Every question about a frame starts with the same tokens: system prompt, user header and the image
  (with the 3D encoding). Their KV cache is computed once per frame and reused; the M-RoPE offset
  (``rope_deltas``) the model derived from the image travels with it, because later text positions are
  "1D position + rope_deltas".
* A box line is ~35 tokens of which a third is fixed scaffold. Under the box grammar a scaffold token is
  the only allowed token, so it is appended without asking the model, and one forward pass feeds the
  model's own token together with the scaffold after it (jump-forward).

The loop here is a plain greedy/sampling loop over a language-model runtime (runtimes.base: transformers or
llama.cpp) with the same logits processors HF ``generate`` uses, so greedy outputs match ``generate`` token
for token (tested), and the cache and drafting work the same on every runtime.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable, List, Optional, Sequence

import numpy as np
import torch
from transformers import LogitsProcessorList

from ..core.types import Cancelled
from .protocol.box_grammar import BoxGrammar, initial_state
from .runtimes.base import DecodeStats, ImagePrefix, LanguageRuntime  # noqa: F401 (re-exported)
from .runtimes.transformers_rt import TransformersRuntime


class PrefixCache:
    """At most ``capacity`` frame prefixes, least recently used dropped first. capacity 1 = the latest frame."""

    def __init__(self, capacity: int = 1):
        if capacity < 1:
            raise ValueError("prefix cache capacity must be >= 1")
        self.capacity = capacity
        self._items: "OrderedDict[Hashable, ImagePrefix]" = OrderedDict()

    def get(self, key: Hashable) -> Optional[ImagePrefix]:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, prefix: ImagePrefix) -> None:
        self._items[prefix.key] = prefix
        self._items.move_to_end(prefix.key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class Stepper:
    """Feeds tokens to a runtime's working sequence and counts the work."""

    def __init__(self, runtime: LanguageRuntime, stats: DecodeStats):
        self.runtime = runtime
        self.stats = stats

    def forward(self, ids, last_only: bool = False) -> torch.Tensor:
        """Logits (len(ids), V) for the positions of ``ids`` appended after the working sequence (last_only: (1, V))."""
        ids = [int(i) for i in torch.as_tensor(ids).reshape(-1).tolist()]
        logits = self.runtime.forward(ids, last_only=last_only)
        self.stats.forward_passes += 1
        self.stats.forward_tokens += len(ids)
        return logits


def as_runtime(model) -> LanguageRuntime:
    """A runtime as is; anything else is a transformers-style model (model(input_ids, past_key_values))."""
    return model if isinstance(model, LanguageRuntime) else TransformersRuntime(model)


def pick_token(scores: torch.Tensor, sample: bool, generator: Optional[torch.Generator]) -> int:
    if not sample:
        return int(torch.argmax(scores))
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.inference_mode()
def decode(
    model,  # a LanguageRuntime, or a transformers model (run by the transformers runtime)
    prefix: ImagePrefix,
    suffix_ids: torch.Tensor,
    processors: LogitsProcessorList,
    eos_ids: Sequence[int],
    max_new_tokens: int,
    stats: DecodeStats,
    grammar: Optional[BoxGrammar] = None,
    drafter: Optional[Callable] = None,
    sample: bool = False,
    generator: Optional[torch.Generator] = None,
    stop: Optional[Callable[[List[int]], bool]] = None,
    warpers: Optional[LogitsProcessorList] = None,
    cancelled: Optional[Callable[[], bool]] = None,
) -> List[int]:
    """Generate after ``prefix`` + ``suffix_ids``; the prefix cache is restored to its length afterwards.

    grammar: constrain to the box grammar (turn 1).
    drafter(state, generated) -> token ids the model is expected to emit next (grammar scaffold such as
    "_3=Bbox" or "," after three digits, plus cheap guesses). They are fed in the same forward pass as the
    model's last token and each is kept only if the model itself picks it at that position (greedy: its
    argmax; sampling: accepted with the model's probability, else resampled from the rest, which keeps the
    sampling distribution exact). So the output is the model's own; only the number of passes drops.
    stop(generated) -> True ends early (e.g. one object asked for and one box found).
    processors run before the grammar mask and warpers (temperature, top-k, top-p) after it, as in HF generate.
    cancelled() -> True raises Cancelled before the next forward pass (the caller gave up on this answer).
    """
    runtime = as_runtime(model)
    runtime.restore(prefix)
    stepper = Stepper(runtime, stats)
    stats.cached_prefix_tokens += prefix.length
    sequence = torch.cat([prefix.ids, suffix_ids.to(prefix.ids.device)], dim=1)
    eos = set(int(e) for e in eos_ids)
    state = initial_state()

    def choose(logits_row: torch.Tensor, seq: torch.Tensor, grammar_state, proposal: Optional[int] = None) -> int:
        scores = processors(seq, logits_row[None].clone())[0]
        if grammar is not None:
            # The model's vocabulary is padded past the tokenizer's (152064 vs 151665): padding is never allowed.
            mask = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
            allowed = torch.from_numpy(grammar.allowed(grammar_state))
            mask[: allowed.shape[0]] = allowed[: scores.shape[0]].to(scores.device)
            scores = scores.masked_fill(~mask, float("-inf"))
        if warpers:
            scores = warpers(seq, scores[None])[0]
        if proposal is None or not sample:
            return pick_token(scores, sample, generator)
        probs = torch.softmax(scores, dim=-1)
        if float(torch.rand((), generator=generator)) < float(probs[proposal]):
            return proposal
        probs[proposal] = 0.0
        return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))

    try:
        logits = stepper.forward(suffix_ids, last_only=True)[-1] if suffix_ids.shape[1] else prefix.first_logits
        generated: List[int] = []
        token = choose(logits, sequence, state)
        while token not in eos and len(generated) < max_new_tokens:
            accepted = [token]
            if grammar is not None:
                state = grammar.advance(state, token)
            room = max_new_tokens - len(generated) - 1
            draft = list(drafter(state, generated + accepted))[:room] if drafter is not None and room > 0 else []
            seq = torch.cat([sequence, torch.tensor([accepted], device=sequence.device)], dim=1)
            if stop is not None and stop(generated + accepted):
                generated.extend(accepted)
                break
            if len(generated) + 1 >= max_new_tokens:
                generated.extend(accepted)
                break
            if cancelled is not None and cancelled():
                raise Cancelled(f"cancelled after {len(generated) + 1} generated tokens")
            logits_all = stepper.forward([token] + draft)
            next_token = None
            for j, proposal in enumerate(draft):
                choice = choose(logits_all[j], seq, state, proposal)
                if choice != proposal:
                    next_token = choice
                    runtime.truncate(runtime.length() - (len(draft) - j))  # drop the rejected drafts
                    break
                accepted.append(choice)
                if grammar is not None:
                    state = grammar.advance(state, choice)
                seq = torch.cat([seq, torch.tensor([[choice]], device=seq.device)], dim=1)
            else:
                next_token = choose(logits_all[len(draft)], seq, state)
            stats.drafted_tokens += len(draft)
            stats.accepted_draft_tokens += len(accepted) - 1
            generated.extend(accepted)
            sequence = seq
            token = next_token
            if stop is not None and stop(generated):
                break
        stats.generated_tokens += len(generated)
        return generated
    finally:
        runtime.restore(prefix)  # drop everything this question appended to the shared prefix


def count_box_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("bbox_") and line.rstrip().endswith(")"))


def token_ids_array(ids) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64)
