"""One pipeline for the CLI, the ROS node and the benchmarks.

frame -> (backend: point map -> model -> boxes) -> optional depth refinement -> reasoning -> Answer.

The pipeline owns the order of the stages and the policy for who answers a question:
explicit 3D reasoning in code whenever the question parser maps the question to an operation,
otherwise the backend's language model (N3D-VLM turn 2). It never raises for a bad question or a
frame it cannot use: it returns an Answer with success False and a message saying why.
"""

from __future__ import annotations

import re
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Callable, Iterator, Optional, Protocol

from .backends.base import Backend, BackendUnsupported
from .engine.runtimes import RUNTIMES
from .engine.runtimes.gguf_export import QUANTS as GGUF_EXPORT_QUANTS
from .core.boxes import degenerate_box_reason
from .core.depth_check import frame_problem
from .core.types import Answer, Cancelled, GroundingResult, InputError, RGBDFrame


class CancelFlag(Protocol):
    """What a caller passes to withdraw a request, e.g. a threading.Event."""

    def is_set(self) -> bool: ...

BACKENDS = ("tabletop", "n3d", "hispatial")
GGUF_QUANTS = ("",) + GGUF_EXPORT_QUANTS  # "" = whatever the file holds
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("", "4bit", "8bit")
SAMPLINGS = ("greedy", "official")

# Chat-template control sequences of the Qwen family (<|im_start|>, <|vision_end|>, ...). The engine also
# tokenises user text so that it can never yield special ids; refusing them here gives the user a clear reason.
_CONTROL_TOKEN = re.compile(r"<\|[^|<>]{0,40}\|>")


@dataclass(frozen=True)
class PipelineConfig:
    backend: str = "tabletop"
    model: str = "yuxinhk/N3D-VLM"
    device: str = "auto"
    dtype: str = "bfloat16"
    quantization: str = ""
    sampling: str = "greedy"
    max_new_tokens: int = 1024
    refine: bool = False
    min_range_m: float = 0.1
    max_range_m: float = 10.0
    max_query_chars: int = 500
    # Speed (n3d backend): reuse the image prefix per frame; constrain + draft the box lines of turn 1;
    # stop turn 1 after one box when a single phrase is grounded. Greedy answers are unchanged by the first two.
    prefix_cache: bool = True
    constrained_decoding: bool = True
    single_object_stop: bool = False
    # A hub id is only looked up in the local cache unless downloads are allowed: a robot should not start
    # fetching 16 GB (or stall on retries without a network) at configure time.
    allow_download: bool = False
    # Language-model runtime of the n3d backend: transformers (the checkpoint in torch) or llamacpp (the
    # checkpoint's vision tower in torch, its language model from an `n3d export-gguf` file).
    runtime: str = "transformers"
    gguf: str = ""          # '' = <model dir>/n3d-lm-<gguf_quant or q4_k_m>.gguf
    gguf_quant: str = ""    # '' = whatever the file holds; else checked against it

    def validated(self) -> "PipelineConfig":
        """Return self, or raise InputError naming the first bad field and its allowed values."""
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check_choice("sampling", self.sampling, SAMPLINGS)
        _check_choice("runtime", self.runtime, RUNTIMES)
        _check_choice("gguf_quant", self.gguf_quant, GGUF_QUANTS)
        if self.runtime != "transformers" and self.backend != "n3d":
            raise InputError(f"runtime {self.runtime!r} runs the n3d backend's language model; backend "
                             f"{self.backend!r} needs runtime 'transformers'")
        if not self.model.strip():
            raise InputError("model must be a hub id (e.g. yuxinhk/N3D-VLM) or a local checkpoint directory")
        if self.device != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device):
            raise InputError(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if not 1 <= self.max_new_tokens <= 4096:
            raise InputError(f"max_new_tokens must be in [1, 4096] (the official limit), got {self.max_new_tokens}")
        if not 0.0 <= self.min_range_m < self.max_range_m:
            raise InputError(f"need 0 <= min_range_m < max_range_m, got {self.min_range_m} and {self.max_range_m}")
        if self.max_query_chars < 1:
            raise InputError(f"max_query_chars must be positive, got {self.max_query_chars}")
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "PipelineConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown pipeline settings {unknown}; known: {sorted(known)}")
        return cls(**values).validated()


def _check_choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise InputError(f"{name} must be one of {list(allowed)}, got {value!r}")


def validate_query(text: str, max_chars: int = 500) -> str:
    """Return the cleaned query, or raise InputError for empty, oversized or hostile text."""
    if not isinstance(text, str):
        raise InputError(f"query must be text, got {type(text).__name__}")
    # Drop control and format characters (NUL, bidi overrides, zero-width joiners) but keep ordinary spaces.
    cleaned = "".join(ch for ch in text if ch in " \t" or unicodedata.category(ch)[0] != "C")
    cleaned = " ".join(cleaned.split())
    if not cleaned:
        raise InputError("query is empty: ask e.g. 'where is the red mug' or 'how far is the mug from the laptop'")
    if len(cleaned) > max_chars:
        raise InputError(f"query is {len(cleaned)} characters; the limit is {max_chars}")
    token = _CONTROL_TOKEN.search(cleaned)
    if token:
        raise InputError(f"query contains the chat control sequence {token.group(0)!r}; remove it")
    return cleaned


def _drop_degenerate(result: GroundingResult) -> None:
    """Remove boxes with a zero, non-finite or absurd size or position (from any backend or refinement),
    recording why in result.dropped: they must not be published or answered as "0.00 m tall"."""
    kept = []
    for box in result.boxes:
        reason = degenerate_box_reason(box)
        if reason:
            result.dropped.append(f"box {box.id} {box.label!r}: {reason}")
        else:
            kept.append(box)
    result.boxes = kept


def _dropped_summary(dropped: list, limit: int = 3) -> str:
    shown = "; ".join(dropped[:limit]) + (f"; and {len(dropped) - limit} more" if len(dropped) > limit else "")
    return f"{len(dropped)} box(es) from the backend were dropped as unusable: {shown}."


def build_backend(config: PipelineConfig) -> Backend:
    """Construct the configured backend. Loading a model happens here (the node's configure step)."""
    if config.backend == "tabletop":
        from .backends.tabletop import TabletopBackend

        return TabletopBackend(min_range_m=config.min_range_m, max_range_m=config.max_range_m)
    if config.backend == "hispatial":
        from .backends.hispatial import build_hispatial_backend

        return build_hispatial_backend(config)
    from .backends.n3d import build_n3d_backend

    return build_n3d_backend(config)


class Pipeline:
    def __init__(self, backend: Backend, config: Optional[PipelineConfig] = None):
        self.backend = backend
        self.config = config or PipelineConfig(backend=getattr(backend, "name", "tabletop"))

    @classmethod
    def from_config(cls, config: PipelineConfig) -> "Pipeline":
        config = config.validated()
        return cls(build_backend(config), config)

    def with_refine(self, refine: bool) -> "Pipeline":
        """The same backend with refinement switched per query (no reload)."""
        return Pipeline(self.backend, replace(self.config, refine=refine))

    # ------------------------------------------------------------------ detection
    def detect(self, frame: RGBDFrame, prompt: Optional[str] = None,
               cancel: Optional[CancelFlag] = None) -> GroundingResult:
        """All objects (prompt None) or the objects a phrase describes.

        Raises InputError on bad input and Cancelled once ``cancel`` is set (checked during decoding).
        """
        start = time.perf_counter()
        self.check_frame(frame)
        with self._cancellable(cancel):
            if prompt is None or not prompt.strip():
                result = self.backend.detect(frame)
            else:
                result = self.backend.ground(frame, [validate_query(prompt, self.config.max_query_chars)])
        self._refine(frame, result)
        result.timings["total"] = time.perf_counter() - start
        return result

    def check_frame(self, frame: RGBDFrame) -> None:
        """Raise InputError if the backend cannot use this frame's size, its intrinsics are implausible, or its
        depth has too few readings in the backend's range (core.frame_size, core.depth_check). The depth and
        intrinsics verdict is computed once per frame object and kept on it."""
        if not isinstance(frame, RGBDFrame):
            raise InputError(f"frame must be an n3d_ros.core.types.RGBDFrame, got {type(frame).__name__}")
        size_problem = getattr(self.backend, "frame_problem", None)
        problem = size_problem(frame) if size_problem is not None else None
        min_m, max_m = getattr(self.backend, "depth_range_m", (self.config.min_range_m, self.config.max_range_m))
        problem = problem or frame_problem(frame, min_m, max_m)
        if problem:
            raise InputError(problem)

    @contextmanager
    def _cancellable(self, cancel: Optional[CancelFlag]) -> Iterator[None]:
        """Let the backend poll ``cancel`` while it runs; one request at a time (the callers serialise)."""
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled before it started")
        self.backend.cancelled = cancel.is_set if cancel is not None else None
        try:
            yield
        finally:
            self.backend.cancelled = None
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")

    # ------------------------------------------------------------------ questions
    def ask(self, frame: RGBDFrame, question: str,
            on_grounded: Optional[Callable[[GroundingResult], None]] = None,
            cancel: Optional[CancelFlag] = None) -> Answer:
        """Answer one spatial question about the frame; never raises for bad questions, unusable frames,
        model output that decodes to impossible boxes, or a withdrawn request (all give success=False).

        on_grounded(grounding) is called between grounding and reasoning (e.g. action feedback).
        cancel: once set, decoding stops before its next forward pass and the answer says "cancelled".
        """
        from .reasoning.questions import parse_question

        start = time.perf_counter()
        timings: dict = {}
        grounding: Optional[GroundingResult] = None
        try:
            query = validate_query(question, self.config.max_query_chars)
            self.check_frame(frame)
            parsed = parse_question(query)
            with self._cancellable(cancel):
                grounding = self.backend.ground_question(frame, query)
            self._refine(frame, grounding)
            if on_grounded is not None:
                on_grounded(grounding)
            timings = dict(grounding.timings)
            reasoning_start = time.perf_counter()
            with self._cancellable(cancel):
                answer = self._reason(frame, query, parsed, grounding)
            timings["reasoning" if answer.path == "geometry" else "answer"] = time.perf_counter() - reasoning_start
            if grounding.dropped and not answer.success:  # say why an object the model did find is missing
                answer.message = (f"{answer.message} {_dropped_summary(grounding.dropped)}").strip()
        except (InputError, Cancelled) as exc:
            answer = Answer(success=False, text="", path="none", message=str(exc),  # Cancelled says "cancelled ..."
                            objects=list(grounding.boxes) if grounding is not None else [])
        timings["total"] = time.perf_counter() - start
        answer.timings = timings
        return answer

    def _reason(self, frame: RGBDFrame, query: str, parsed, grounding: GroundingResult) -> Answer:
        from .reasoning.spatial import answer_question

        # Optional backend hook (backends/base.py): questions the geometry path could parse but the backend's
        # own model answers better (HiSpatial boxes only the objects named, so counts need the model).
        answers_with_model = getattr(self.backend, "answers_with_model", None)
        if parsed is not None and not (answers_with_model is not None and answers_with_model(parsed)):
            return answer_question(parsed, grounding.boxes)
        return self._answer_with_model(frame, query, grounding)

    def _answer_with_model(self, frame: RGBDFrame, query: str, grounding: GroundingResult) -> Answer:
        try:
            text, reasoning = self.backend.answer_freeform(frame, query, grounding)
        except BackendUnsupported as exc:
            return Answer(success=False, text="", path="none", objects=list(grounding.boxes),
                          message=f"{exc} Ask about distance, size, position, direction or counts, or run "
                                  "the n3d backend for free-form questions.")
        # Optional backend hook: the value/unit of a model answer, for models that answer numerically (HiSpatial).
        value_of = getattr(self.backend, "answer_value", None)
        value, unit = value_of(query, text) if value_of is not None and text else (None, "")
        return Answer(success=bool(text), text=text, path="model", reasoning=reasoning,
                      objects=list(grounding.boxes), value=value, unit=unit,
                      message="" if text else "the model returned no answer after its reasoning")

    def _refine(self, frame: RGBDFrame, result: GroundingResult) -> None:
        """Drop degenerate boxes, refine the rest if configured, and drop any the refinement made degenerate."""
        _drop_degenerate(result)
        if not self.config.refine or not result.boxes:
            return
        from .backends.refine import refine_box

        start = time.perf_counter()
        refined = []
        for box in result.boxes:
            new_box, report = refine_box(box, frame)
            new_box.attributes = {**new_box.attributes, "refine": report.to_dict()}
            refined.append(new_box)
        result.boxes = refined
        _drop_degenerate(result)
        result.timings["refine"] = time.perf_counter() - start

    def close(self) -> None:
        self.backend.close()
