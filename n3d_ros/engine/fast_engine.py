"""N3DEngine with the speed work of fast_decode: a per-frame image-prefix cache and drafted box decoding.

Same prompts, same model, same processors; only how the tokens are computed changes:
* the prefix (system + user header + image + <|vision_end|>) is prefilled once per frame, with the 3D
  encoding armed, and reused by every later turn on that frame (turn 1, turn 2, further questions);
* turn 1 is constrained to the box grammar, and scaffold/likely tokens are drafted and verified in the
  forward pass the model runs anyway.
Greedy outputs equal N3DEngine's (tests compare them token for token).
"""

from __future__ import annotations

import time
from typing import List, Optional, Tuple

import torch
from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor
from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

from .protocol.box_grammar import BoxDrafter, BoxGrammar
from .fast_decode import DecodeStats, PrefixCache, count_box_lines, decode
from .model import N3DEngine, TurnInputs
from .runtimes.base import LanguageRuntime
from .runtimes.transformers_rt import TransformersRuntime
from .vision.stage import image_embeddings, mrope_positions


def logits_processors(config) -> Tuple[LogitsProcessorList, LogitsProcessorList]:
    """(penalties, warpers): the processors HF generate builds from this generation config, in its order.

    HF applies a caller's own processors (here: the box grammar) after its penalties and before its warpers
    (temperature, top-k, top-p). The grammar mask must sit there too: masking after top-k could leave no
    allowed token at all (every score -inf, NaN probabilities).
    """
    penalties, warpers = LogitsProcessorList(), LogitsProcessorList()
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        penalties.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
    if config.do_sample:
        if config.temperature is not None and config.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k is not None and config.top_k != 0:
            warpers.append(TopKLogitsWarper(config.top_k, min_tokens_to_keep=1))
        if config.top_p is not None and config.top_p < 1.0:
            warpers.append(TopPLogitsWarper(config.top_p, min_tokens_to_keep=1))
    return penalties, warpers


WIDE_PASS = 4
# On the spec's two test-vector lines the scaffold alone takes 22.5 passes per line and the guesses save only
# two more (20.5), for about 35 rejected tokens of width per line (the scaffold alone: under one). So they
# pay only where width is nearly free, as on a GPU whose decode is bound by reading the weights. Measured on
# two CPU cores: llama.cpp f16 at 1.69x was 20% slower per line with guesses; q8_0 (2.3x), q4_k_m (2.7x) more.
CHEAP_WIDE_PASS = 1.25


def wide_pass_cost(runtime: LanguageRuntime, prefix, repeats: int = 2, clock=time.perf_counter) -> float:
    """Time of a WIDE_PASS-token pass over that of a 1-token pass, right after ``prefix`` (restored after).

    Fastest of ``repeats`` each; the logits are read back so that an asynchronous device has finished.
    """
    token = int(prefix.ids[0, -1])

    def timed(width: int) -> float:
        best = float("inf")
        for _ in range(repeats):
            runtime.restore(prefix)
            start = clock()
            float(runtime.forward([token] * width)[-1, 0])
            best = min(best, clock() - start)
        return best

    try:
        one, wide = timed(1), timed(WIDE_PASS)
    finally:
        runtime.restore(prefix)
    return wide / max(one, 1e-9)


class FastN3DEngine(N3DEngine):
    """N3DEngine + image-prefix cache (``prefix_cache_size`` frames) + constrained/drafted turn 1.

    single_object_stop: end turn 1 after the first complete box when one object is asked for (grounding
    prompts only; off by default because a phrase like "the mugs" can mean several).
    runtime: what runs the language model (runtimes.base); default: this model in transformers. The vision
    stage (vision tower + 3D encoding + merger) always runs on ``model`` in torch.
    draft_guesses: let the drafter guess where a number or class ends (box_grammar.BoxDrafter). None: decide
    at the first prefill from what a wider pass costs on this runtime (wide_pass_cost): guesses pay where
    width is nearly free (a GPU reading weights), not where each token costs compute (a CPU). Greedy
    outputs never depend on it; under sampling None means on (a seed's draws depend on the drafts).
    """

    def __init__(self, *args, prefix_cache_size: int = 1, constrain_boxes: bool = True, draft: bool = True,
                 single_object_stop: bool = False, use_prefix_cache: bool = True, seed: Optional[int] = None,
                 runtime: Optional[LanguageRuntime] = None, draft_guesses: Optional[bool] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.runtime = runtime if runtime is not None else TransformersRuntime(self.model)
        self.prefix_cache = PrefixCache(prefix_cache_size)
        self.constrain_boxes = constrain_boxes
        self.draft = draft
        # Under sampling the draws a seed gives depend on what was drafted, so the choice is fixed (guesses on,
        # as before the choice existed) rather than timed: a seed then gives the same boxes on every machine.
        sampling = bool(self.generation_config.do_sample)
        self.draft_guesses = True if (draft_guesses is None and sampling) else draft_guesses
        self.wide_pass_ratio: Optional[float] = None  # measured cost of a WIDE_PASS-token pass / a 1-token pass
        self.single_object_stop = single_object_stop
        self.use_prefix_cache = use_prefix_cache
        self.stats = DecodeStats()
        self.processors, self.warpers = logits_processors(self.generation_config)
        self.eos_ids = list(self.generation_config.eos_token_id)
        self._grammar: Optional[BoxGrammar] = None
        self._turn_mode: Optional[str] = None
        self._hint: Optional[str] = None
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    @classmethod
    def from_engine(cls, engine: N3DEngine, sampling="greedy", **options) -> "FastN3DEngine":
        """Take over a loaded N3DEngine's model (its encoding hook moves to the new engine)."""
        engine.hook.remove()
        return cls(engine.model, engine.tokenizer, engine.image_processor, sampling=sampling,
                   max_new_tokens=engine.max_new_tokens, source=engine.source, **options)

    @property
    def grammar(self) -> BoxGrammar:
        if self._grammar is None:  # built once from the vocabulary (~0.5 s)
            self._grammar = BoxGrammar.from_tokenizer(self.tokenizer, self.eos_ids)
        return self._grammar

    # turn 1 is the only turn with the box grammar: the flow methods tell generate_tokens which turn runs
    def _grounding(self, inputs, user_text: str, mode: str, vision=None):
        self._turn_mode = mode
        try:
            return super()._grounding(inputs, user_text, mode, vision)
        finally:
            self._turn_mode = None

    def ground(self, inputs, category: str, vision=None):
        self._hint = category
        try:
            return super().ground(inputs, category, vision)
        finally:
            self._hint = None

    def _prefix_for(self, turn: TurnInputs):
        prompt = turn.prompt
        end = prompt.image_start + prompt.image_tokens + 1  # through <|vision_end|>
        key = (id(turn.frame_ref), turn.map_hw, turn.grid_hw)
        prefix = self.prefix_cache.get(key) if self.use_prefix_cache else None
        if prefix is not None and prefix.ids[0].tolist() == prompt.ids[:end]:
            return prefix, end
        ids = turn.model_kwargs["input_ids"][:, :end]
        embeds = image_embeddings(self.model, self.hook, turn.model_kwargs["pixel_values"],
                                  turn.model_kwargs["image_grid_thw"], turn.points, turn.map_hw, turn.grid_hw)
        positions, _ = mrope_positions(prompt.ids[:end], self.image_token_id, turn.grid_hw, self.merge_size)
        prefix = self.runtime.prefill(key, ids, embeds, positions, self.stats)
        prefix.frame_ref = turn.frame_ref  # keeps the frame alive so its id() cannot be reused while cached
        if self.draft and self.draft_guesses is None:
            self.wide_pass_ratio = wide_pass_cost(self.runtime, prefix)
            self.draft_guesses = self.wide_pass_ratio < CHEAP_WIDE_PASS
        if self.use_prefix_cache:
            self.prefix_cache.put(prefix)
        return prefix, end

    def build_inputs(self, inputs, user_text: str, vision=None) -> TurnInputs:
        turn = super().build_inputs(inputs, user_text, vision)
        turn.frame_ref = inputs
        return turn

    def generate_tokens(self, turn: TurnInputs) -> List[int]:
        prefix, end = self._prefix_for(turn)
        suffix = turn.model_kwargs["input_ids"][:, end:]
        grammar = self.grammar if (self._turn_mode and self.constrain_boxes) else None
        drafter = (BoxDrafter(grammar, self.tokenizer, self._hint, guesses=self.draft_guesses is not False)
                   if (grammar is not None and self.draft) else None)
        stop = self._stop_after_one_box if (self.single_object_stop and self._turn_mode == "ground") else None
        tokens = decode(self.runtime, prefix, suffix, self.processors, self.eos_ids,
                        self.generation_config.max_new_tokens, self.stats, grammar=grammar, drafter=drafter,
                        sample=bool(self.generation_config.do_sample), generator=self._generator, stop=stop,
                        warpers=self.warpers, cancelled=self.cancelled)
        return self._first_box_only(tokens) if stop is not None else tokens

    def _first_box_only(self, tokens: List[int]) -> List[int]:
        """Drop what verified drafts added after the first complete line (it would parse as a cut-off box)."""
        for end in range(1, len(tokens) + 1):
            if self._stop_after_one_box(tokens[:end]):
                return tokens[:end]
        return tokens

    def _stop_after_one_box(self, ids: List[int]) -> bool:
        return count_box_lines(self.tokenizer.decode(ids)) >= 1

    def close(self) -> None:
        self.prefix_cache.clear()
        self.runtime.close()
        super().close()
