"""The HiSpatial-3B backend: RGB-D frame -> 448 colour + metric xyz map -> HiSpatialEngine -> optical-frame boxes.

ground(phrases) asks the model's 3D AABB query once per phrase ("detect the aabb of the {phrase}"); the six
metric values become an axis-aligned Box3D in the colour optical frame. ground_question grounds the object
phrases of a question the same way, so the pipeline's geometry path can answer from the boxes;
answer_freeform hands the question itself to the model (its answers are metres, Yes/No, counts, option
letters) and :meth:`answer_value` turns that text into value/unit. The image features of the latest frame
(SigLIP + depth encoder + projector) are computed once and reused by every prompt on that frame.

HiSpatial has no "list every object" prompt, so detect() without a phrase is refused with an InputError that
says what to ask instead.
"""

from __future__ import annotations

import re
import time
from typing import Callable, List, Optional, Tuple

from ..core.types import GroundingResult, InputError, RGBDFrame
from ..hispatial.answers import aabb_to_box, parse_answer
from ..hispatial.model import COT_MAX_NEW_TOKENS, FrameFeatures, HiSpatialEngine
from ..hispatial.pointmap import HiSpatialInputs, build_xyz_inputs
from ..hispatial.prompts import COT_SUFFIXES, aabb_question
from ..reasoning.questions import extract_object_phrases

LOW_VALID_FRACTION = 0.3  # below this, most of the map is holes: MoGe maps in training were dense
# The viewer is the origin of the optical frame, not an object to put a box around.
VIEWER_WORDS = {"camera", "the camera", "observer", "viewer", "robot", "photographer", "me", "you"}


class HiSpatialBackend:
    name = "hispatial"

    def __init__(self, engine: HiSpatialEngine, min_range_m: float = 0.1, max_range_m: float = 10.0):
        self.engine = engine
        self.min_range_m = min_range_m
        self.max_range_m = max_range_m
        self._latest: Optional[Tuple[RGBDFrame, HiSpatialInputs, FrameFeatures]] = None
        self.last_turns: dict = {}  # prompts and raw answers of the latest call, for logs

    @property
    def cancelled(self) -> Optional[Callable[[], bool]]:
        return self.engine.cancelled

    @cancelled.setter
    def cancelled(self, check: Optional[Callable[[], bool]]) -> None:
        self.engine.cancelled = check

    # ------------------------------------------------------------ shared steps
    def prepare(self, frame: RGBDFrame, timings: dict) -> Tuple[HiSpatialInputs, FrameFeatures, List[str]]:
        """Point map and image features of the frame, computed once per frame object."""
        if self._latest is None or self._latest[0] is not frame:
            start = time.perf_counter()
            inputs = build_xyz_inputs(frame, self.min_range_m, self.max_range_m)
            timings["point_map"] = time.perf_counter() - start
            features = self.engine.encode_frame(inputs)
            timings["image_features"] = features.seconds
            self._latest = (frame, inputs, features)
        inputs, features = self._latest[1], self._latest[2]
        notes = []
        if inputs.valid_fraction < LOW_VALID_FRACTION:
            notes.append(f"only {inputs.valid_fraction:.0%} of the point map has depth in "
                         f"({self.min_range_m}, {self.max_range_m}) m; HiSpatial was trained on dense maps, so "
                         "answers about the empty regions are unreliable")
        return inputs, features, notes

    # ------------------------------------------------------------ Backend protocol
    def detect(self, frame: RGBDFrame) -> GroundingResult:
        raise InputError("the hispatial backend grounds named objects only (it has no 'list every object' "
                         "prompt): give a phrase, e.g. 'red mug', or use backend n3d/tabletop to detect all")

    def ground(self, frame: RGBDFrame, phrases: List[str]) -> GroundingResult:
        phrases = [p.strip() for p in (phrases or []) if p and p.strip()]
        if not phrases:
            raise InputError("ground needs at least one phrase, e.g. ['red mug']")
        timings: dict = {}
        _, features, notes = self.prepare(frame, timings)
        boxes, raws, skipped = [], [], 0
        for index, phrase in enumerate(phrases):
            output = self.engine.ask(features, aabb_question(phrase))
            timings[f"aabb[{phrase!r}]" if len(phrases) > 1 else "aabb"] = output.timings["generate"]
            raws.append(output.text)
            box = aabb_to_box(output.text, label=phrase, box_id=len(boxes))
            if box is None:
                skipped += 1
                notes.append(f"{phrase!r}: the answer {output.text[:80]!r} is not six metric values "
                             "(xmin ymin zmin xmax ymax zmax)")
                continue
            box.attributes["phrase"] = phrase
            boxes.append(box)
        self.last_turns = {"prompts": [aabb_question(p) for p in phrases], "answers": raws}
        return GroundingResult(boxes=boxes, backend=self.name, raw_text="\n".join(raws), skipped_lines=skipped,
                               timings=timings, notes=notes)

    def ground_question(self, frame: RGBDFrame, question: str) -> GroundingResult:
        """The objects the question names, one AABB query each; none named -> no boxes (the model answers)."""
        phrases = [p for p in extract_object_phrases(question) if p.lower() not in VIEWER_WORDS]
        if phrases:
            return self.ground(frame, phrases)
        timings: dict = {}
        _, _, notes = self.prepare(frame, timings)  # features now, so answer_freeform reuses them
        return GroundingResult(boxes=[], backend=self.name, timings=timings,
                               notes=notes + ["no object phrase found in the question to ground"])

    def answer_freeform(self, frame: RGBDFrame, question: str, grounding: GroundingResult) -> Tuple[str, str]:
        """The model's own answer to the question (HiSpatial is single-turn: the boxes are not fed back)."""
        timings: dict = {}
        _, features, _ = self.prepare(frame, timings)
        budget = None
        if any(question.rstrip().endswith(s.strip()) for s in COT_SUFFIXES):
            budget = max(self.engine.max_new_tokens, COT_MAX_NEW_TOKENS)  # four-step answers run ~150 tokens
        output = self.engine.ask(features, question, max_new_tokens=budget)
        self.last_turns = {**self.last_turns, "question": output.prompt.text, "answer": output.text,
                           "answer_timings": {**timings, **output.timings}}
        return split_chain_of_thought(output.text)

    def answers_with_model(self, parsed) -> bool:
        """Whether a parsed question needs the whole scene, which this backend cannot box: counts,
        superlatives and "what is left of X" (it grounds named phrases only). The model answers those itself."""
        return parsed.op in ("count", "extreme") or parsed.form == "list"

    def answer_value(self, question: str, text: str) -> Tuple[Optional[float], str]:
        """(value, unit) of one of the model's answers: metres "m", "count" or "bool"; (None, "") otherwise."""
        parsed = parse_answer(text, question)
        return parsed.value, parsed.unit

    def close(self) -> None:
        self._latest = None
        self.engine.close()


def split_chain_of_thought(text: str) -> Tuple[str, str]:
    """(answer, reasoning): a four-step answer ("Step1: Plan ... Step4: Final answer\n<answer>") is split at
    Step4; any other answer is all answer."""
    match = _STEP4.search(text)
    if match is None:
        return text.strip(), ""
    final = text[match.end():].strip()
    return (final or text.strip()), text[:match.start()].strip()


_STEP4 = re.compile(r"Step\s*4\s*:?\s*(?:Final answer)?\s*:?", re.IGNORECASE)


def build_hispatial_backend(config) -> HiSpatialBackend:
    """The backend for a PipelineConfig with backend "hispatial". The N3D default model id means "not set"."""
    from ..hispatial.loading import DEFAULT_MODEL, load_hispatial

    if config.quantization:
        raise InputError("the hispatial backend has no quantised mode; use dtype bfloat16 (about 6 GB)")
    if config.sampling != "greedy":
        raise InputError("the hispatial backend decodes greedily, as the reference; set sampling: greedy")
    model = DEFAULT_MODEL if config.model == "yuxinhk/N3D-VLM" else config.model
    engine = load_hispatial(model, device=config.device, dtype=config.dtype,
                            max_new_tokens=config.max_new_tokens, allow_download=config.allow_download)
    return HiSpatialBackend(engine, min_range_m=config.min_range_m, max_range_m=config.max_range_m)
