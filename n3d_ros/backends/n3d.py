"""The N3D-VLM backend: RGB-D frame -> point map -> N3DEngine -> boxes in the optical frame.

detect -> the detection prompt; ground(phrases) -> one grounding prompt per phrase (the official wording takes
one category); ground_question -> the auto-split turn 1; answer_freeform -> turn 2 with the scene condition
over the grounding's boxes. The point map and the processed image of the latest frame are reused between the
calls of one question (turn 1 and turn 2 must see the same inputs anyway).
"""

from __future__ import annotations

import time
from typing import Callable, List, Optional, Tuple

from ..core.boxes import degenerate_box_reason
from ..core.frame_size import n3d_size_problem
from ..core.pointmap import QWEN_MIN_PIXELS, N3DInputs, build_point_map
from ..core.types import GroundingResult, InputError, RGBDFrame
from ..engine.protocol.decoding import bins_problem
from ..engine.model import Grounding, N3DEngine, VisionInputs

MAX_NOTES = 10


def build_n3d_backend(config) -> "N3DBackend":
    """The n3d backend for a PipelineConfig, on its language-model runtime (config.runtime: transformers |
    llamacpp, with config.gguf / config.gguf_quant for llamacpp)."""
    from ..engine.runtimes.select import load_fast_engine

    engine = load_fast_engine(config, runtime=config.runtime, gguf=config.gguf, gguf_quant=config.gguf_quant)
    return N3DBackend(engine, min_range_m=config.min_range_m, max_range_m=config.max_range_m)


class N3DBackend:
    name = "n3d"

    def __init__(self, engine: N3DEngine, min_range_m: float = 0.1, max_range_m: float = 10.0):
        self.engine = engine
        self.min_range_m = min_range_m
        self.max_range_m = max_range_m
        self._latest: Optional[Tuple[RGBDFrame, N3DInputs, VisionInputs]] = None
        self.last_turns: dict = {}  # raw texts of the latest call, for logs and callers that want them

    @property
    def depth_range_m(self) -> Tuple[float, float]:
        return self.min_range_m, self.max_range_m

    def frame_problem(self, frame: RGBDFrame) -> Optional[str]:
        """Why the model's image processor cannot take this frame's size (core.frame_size), or None."""
        processor = self.engine.image_processor
        size = getattr(processor, "size", None) or {}
        # transformers 5 keeps min_pixels as size["shortest_edge"], 4.x as an attribute; the stock value otherwise
        min_pixels = getattr(processor, "min_pixels", None) or size.get("shortest_edge") or QWEN_MIN_PIXELS
        return n3d_size_problem(frame.width, frame.height, int(processor.patch_size) * int(processor.merge_size),
                                int(min_pixels))

    @property
    def cancelled(self) -> Optional[Callable[[], bool]]:
        return self.engine.cancelled

    @cancelled.setter
    def cancelled(self, check: Optional[Callable[[], bool]]) -> None:
        self.engine.cancelled = check  # polled before every forward pass of decoding

    # ------------------------------------------------------------ shared steps
    def prepare(self, frame: RGBDFrame, timings: dict) -> Tuple[N3DInputs, VisionInputs]:
        """Point map + processed image of the frame, computed once per frame object."""
        if self._latest is not None and self._latest[0] is frame:
            return self._latest[1], self._latest[2]
        start = time.perf_counter()
        inputs = build_point_map(frame, self.min_range_m, self.max_range_m)
        timings["point_map"] = time.perf_counter() - start
        start = time.perf_counter()
        vision = self.engine.encode_image(inputs)
        timings["preprocess"] = time.perf_counter() - start
        self._latest = (frame, inputs, vision)
        return inputs, vision

    def _result(self, groundings: List[Grounding], timings: dict, phrases: Optional[List[str]] = None) -> GroundingResult:
        boxes, notes, skipped, dropped = [], [], 0, []
        for index, grounding in enumerate(groundings):
            prefix = f"turn1[{phrases[index]!r}]" if phrases and len(phrases) > 1 else "turn1"
            timings.update({f"{prefix}_{k}": v for k, v in grounding.turn.timings.items()})
            skipped += grounding.parsed.skipped_lines
            if grounding.parsed.truncated:
                notes.append(f"{prefix}: output cut at max_new_tokens ({self.engine.generation_config.max_new_tokens}); "
                             "the last box was dropped")
            notes.extend(f"{prefix}: {p}" for p in grounding.parsed.problems)
            for box in grounding.boxes:
                # a line that parses but decodes to no real box (size bin 0, bins beyond 0-999, inf) is dropped
                reason = bins_problem(box.attributes["bins"]) or degenerate_box_reason(box)
                if reason:
                    dropped.append(f"bbox_{box.id} {box.label!r}: {reason}")
                    continue
                box.attributes["model_id"] = box.id
                if phrases:
                    box.attributes["phrase"] = phrases[index]
                boxes.append(box)
        if len(groundings) > 1:  # model ids restart at 0 per prompt: renumber so ids stay unique
            for new_id, box in enumerate(boxes):
                box.id = new_id
        raw = "\n".join(g.turn.text for g in groundings)
        self.last_turns = {"turn1": [g.turn.text for g in groundings]}
        if len(notes) > MAX_NOTES:
            notes = notes[:MAX_NOTES] + [f"... {len(notes) - MAX_NOTES} more"]
        return GroundingResult(boxes=boxes, backend=self.name, raw_text=raw, skipped_lines=skipped,
                               timings=timings, notes=notes, dropped=dropped)

    # ------------------------------------------------------------ Backend protocol
    def detect(self, frame: RGBDFrame) -> GroundingResult:
        timings: dict = {}
        inputs, vision = self.prepare(frame, timings)
        return self._result([self.engine.detect(inputs, vision)], timings)

    def ground(self, frame: RGBDFrame, phrases: List[str]) -> GroundingResult:
        phrases = [p for p in (phrases or []) if p and p.strip()]
        if not phrases:
            raise InputError("ground needs at least one phrase, e.g. ['red mug']")
        timings: dict = {}
        inputs, vision = self.prepare(frame, timings)
        groundings = [self.engine.ground(inputs, phrase, vision) for phrase in phrases]
        return self._result(groundings, timings, phrases)

    def ground_question(self, frame: RGBDFrame, question: str) -> GroundingResult:
        timings: dict = {}
        inputs, vision = self.prepare(frame, timings)
        return self._result([self.engine.ground_question(inputs, question, vision)], timings)

    def answer_freeform(self, frame: RGBDFrame, question: str, grounding: GroundingResult) -> Tuple[str, str]:
        """Turn 2 over grounding.boxes (after any refinement), auto-split captions as the demo."""
        timings: dict = {}
        inputs, vision = self.prepare(frame, timings)
        turn1 = Grounding(turn=None, parsed=None, boxes=list(grounding.boxes), mode="auto_split")
        answer, reasoning, turn2 = self.engine.answer(inputs, question, turn1, vision)
        self.last_turns = {**self.last_turns, "turn2_prompt": turn2.user_text, "turn2": turn2.text,
                           "turn2_timings": {**timings, **turn2.timings}}
        return answer, reasoning

    def close(self) -> None:
        self._latest = None
        self.engine.close()
