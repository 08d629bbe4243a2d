"""The contract every grounding backend fulfils. The pipeline only talks to this."""

from __future__ import annotations

from typing import Callable, List, Optional, Protocol, Tuple

from ..core.types import GroundingResult, RGBDFrame


class BackendUnsupported(RuntimeError):
    """The backend cannot do this (e.g. the tabletop backend has no language model for free-form questions)."""


class Backend(Protocol):
    name: str
    # Set by the pipeline for the duration of one request; a backend with long steps (model decoding) polls it
    # and raises core.types.Cancelled. Fast backends (tabletop, ~40 ms) leave it to the pipeline's own checks.
    cancelled: Optional[Callable[[], bool]]

    # Optional, used by the pipeline before any work: depth_range_m = (min, max) metres the backend uses, and
    # frame_problem(frame) -> why the frame's size cannot be used (core.frame_size), or None.
    # Optional, used when reasoning: answers_with_model(parsed_question) -> True to send a question the geometry
    # path could answer to the model instead (a backend that boxes only named objects cannot count), and
    # answer_value(question, answer_text) -> (value or None, unit) for a model that answers numerically.

    def detect(self, frame: RGBDFrame) -> GroundingResult:
        """Every object the backend can find."""

    def ground(self, frame: RGBDFrame, phrases: List[str]) -> GroundingResult:
        """Boxes for the objects the phrases describe (e.g. ["red mug", "laptop"])."""

    def ground_question(self, frame: RGBDFrame, question: str) -> GroundingResult:
        """Boxes for the objects a whole question mentions (N3D auto-split turn 1)."""

    def answer_freeform(
        self, frame: RGBDFrame, question: str, grounding: GroundingResult
    ) -> Tuple[str, str]:
        """(final answer, reasoning) from a model's second turn; raises BackendUnsupported if there is no model."""

    def close(self) -> None:
        """Free memory (GPU) held by the backend."""
