"""Load N3D-VLM on a stock transformers 5.x Qwen2.5-VL and run its one- and two-turn flows.

The checkpoint is a plain Qwen2.5-VL state dict (the 3D encoding has no parameters, spec 2.4), so the stock
``Qwen2_5_VLForConditionalGeneration`` loads it and :class:`encoding.PointEncodingHook` adds the encoding at
the merger input. Positions use M-RoPE through ``mm_token_type_ids`` (spec 3.2: without it 5.x silently gives
the image 1D positions). One image, batch 1 (spec 7 item 19).

The steps of a turn are separate methods so that faster decoders can replace one of them:
``encode_image`` (processor) -> ``build_inputs`` (prompt ids + model kwargs) -> ``generate_tokens`` (prefill
with the encoding armed, then decode) -> ``decode_text``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..core.resize import resize_horizontal_first, smart_resize_size
from ..core.types import Box3D, Cancelled, InputError
from .protocol.box_parser import ParsedOutput, parse_boxes
from .protocol.prompts import (Prompt, auto_split_selection, build_prompt, detection_text, grounding_text,
                      referenced_selection, scene_condition, split_text, turn2_text)

DEFAULT_MODEL = "yuxinhk/N3D-VLM"
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = (None, "4bit", "8bit")
# The official demo's sampling (spec 4.6); greedy is our default because a robot wants repeatable answers.
OFFICIAL_SAMPLING = {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 10}
OFFICIAL_MAX_NEW_TOKENS = 4096
IMAGE_LONG_SIDE = 640


class ModelNotFound(InputError):
    """The checkpoint is not where the ``model`` setting points."""


def _missing_weights_message(model: str, reason: str) -> str:
    return (f"N3D-VLM weights not found for model={model!r} ({reason}). Download them once with "
            f"`huggingface-cli download {DEFAULT_MODEL} --local-dir ~/models/N3D-VLM` and set the `model` "
            "parameter (CLI --model, ROS parameter model) to that directory.")


# ---------------------------------------------------------------- results
@dataclass
class VisionInputs:
    """The processor's output for one image: reused by both turns of a question."""

    pixel_values: "object"
    image_grid_thw: "object"
    grid_hw: Tuple[int, int]
    image_tokens: int


@dataclass
class TurnInputs:
    prompt: Prompt
    model_kwargs: dict  # input_ids, attention_mask, mm_token_type_ids, pixel_values, image_grid_thw
    points: "object"  # (N, 4) float32 torch tensor, a fresh copy per turn
    map_hw: Tuple[int, int]
    grid_hw: Tuple[int, int]


@dataclass
class TurnOutput:
    user_text: str
    text: str  # all new tokens decoded at once, special tokens skipped
    token_ids: List[int]
    prompt_tokens: int
    timings: dict = field(default_factory=dict)


@dataclass
class Grounding:
    """Turn 1: what the model wrote, what parsed, and the metric boxes (optical frame)."""

    turn: TurnOutput
    parsed: ParsedOutput
    boxes: List[Box3D]
    mode: str  # "detect", "ground" or "auto_split"


@dataclass
class AskResult:
    grounding: Grounding
    answer: str
    reasoning: str
    turn2: TurnOutput
    timings: dict = field(default_factory=dict)


def split_reasoning(text: str) -> Tuple[str, str]:
    """(final answer, reasoning) from ``<think> ... </think> answer``; whitespace collapsed as the demo does."""
    text = " ".join(text.split())
    if "</think>" in text:
        thought, answer = text.split("</think>", 1)
        return answer.strip(), thought.replace("<think>", "", 1).strip()
    if "<think>" in text:  # cut off while thinking: no answer yet
        return "", text.split("<think>", 1)[1].strip()
    return text.strip(), ""


# ---------------------------------------------------------------- engine
class N3DEngine:
    def __init__(self, model, tokenizer, image_processor, sampling: Union[str, dict] = "greedy",
                 max_new_tokens: int = 1024, source: str = ""):
        from .vision.encoding import PointEncodingHook

        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.source = source
        self.config = model.config
        self.image_token_id = int(model.config.image_token_id)
        self.merge_size = int(model.config.vision_config.spatial_merge_size)
        self.hook = PointEncodingHook(model.model.visual.merger)
        self.max_new_tokens = max_new_tokens
        self.generation_config = self.make_generation_config(sampling, max_new_tokens)
        # Set per request by the caller (the pipeline): True once nobody waits for the answer any more.
        self.cancelled: Optional[Callable[[], bool]] = None
        # generate() fills unset (None) fields from model.generation_config; make that ours too, so greedy
        # stays free of the checkpoint's sampling values.
        model.generation_config = self.generation_config

    # ------------------------------------------------------------ settings
    @property
    def device(self):
        return self.model.device

    @property
    def context_length(self) -> int:
        return int(self.config.get_text_config().max_position_embeddings)

    def make_generation_config(self, sampling: Union[str, dict], max_new_tokens: int):
        """The checkpoint's generation config (repetition_penalty, EOS ids) with our sampling on top."""
        if not 1 <= max_new_tokens <= OFFICIAL_MAX_NEW_TOKENS:
            raise InputError(f"max_new_tokens must be in [1, {OFFICIAL_MAX_NEW_TOKENS}], got {max_new_tokens}")
        config = copy.deepcopy(self.model.generation_config)
        if sampling == "greedy":
            config.do_sample, config.temperature, config.top_p, config.top_k = False, None, None, None
        elif sampling == "official":
            for key, value in OFFICIAL_SAMPLING.items():
                setattr(config, key, value)
        elif isinstance(sampling, dict):
            unknown = set(sampling) - {"temperature", "top_p", "top_k", "repetition_penalty", "do_sample"}
            if unknown:
                raise InputError(f"unknown sampling settings {sorted(unknown)}")
            config.do_sample = True
            for key, value in sampling.items():
                setattr(config, key, value)
        else:
            raise InputError(f"sampling must be 'greedy', 'official' or a dict of settings, got {sampling!r}")
        config.max_new_tokens = max_new_tokens
        config.num_beams = 1
        config.use_cache = True
        config.pad_token_id = self.tokenizer.eos_token_id  # as the demo: pad with <|im_end|>
        eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        config.eos_token_id = [e for e in eos if e is not None] + ([im_end] if im_end not in eos else [])
        config.validate()
        return config

    # ------------------------------------------------------------ steps of one turn
    def encode_image(self, inputs) -> VisionInputs:
        """Run the processor (PIL bicubic to a multiple of 28) on the already 640-px LANCZOS image."""
        image = inputs.image
        if getattr(image, "mode", None) != "RGB":
            raise InputError(f"inputs.image must be a PIL RGB image, got {type(image).__name__} {getattr(image, 'mode', '')}")
        if max(image.size) != IMAGE_LONG_SIDE:
            raise InputError(f"inputs.image must have a long side of {IMAGE_LONG_SIDE} px (spec 1.1), got {image.size}")
        # The processor's BICUBIC step to multiples of 28, done here with the horizontal pass first as on the
        # model's Pillow 11 (Pillow 13 may run it vertical first: core.resize); the processor then only
        # rescales, normalises and patchifies.
        resized = resize_horizontal_first(image, self.processor_size(*image.size), self.image_processor.resample)
        out = self.image_processor(images=[resized], do_resize=False, return_tensors="pt")
        t, gh, gw = (int(v) for v in out["image_grid_thw"][0])
        if t != 1:
            raise InputError(f"expected one temporal patch for an image, got grid {t}x{gh}x{gw}")
        return VisionInputs(out["pixel_values"], out["image_grid_thw"], (gh, gw), gh * gw // self.merge_size ** 2)

    def processor_size(self, width: int, height: int) -> Tuple[int, int]:
        """(width, height) the image processor's smart_resize picks, from its own patch and pixel settings."""
        processor = self.image_processor
        size = getattr(processor, "size", None) or {}
        # transformers 5 keeps the pixel limits in size; 4.x also as min_pixels/max_pixels attributes
        min_pixels = getattr(processor, "min_pixels", None) or size.get("shortest_edge")
        max_pixels = getattr(processor, "max_pixels", None) or size.get("longest_edge")
        if not (min_pixels and max_pixels):
            raise InputError(f"the image processor ({type(processor).__name__}) has no min/max pixel limits "
                             f"(size={size!r}); its preprocessor_config.json needs min_pixels and max_pixels")
        factor = int(processor.patch_size) * int(processor.merge_size)
        return smart_resize_size(width, height, factor, int(min_pixels), int(max_pixels))

    def build_inputs(self, inputs, user_text: str, vision: Optional[VisionInputs] = None) -> TurnInputs:
        import torch

        vision = vision or self.encode_image(inputs)
        prompt = build_prompt(self.tokenizer, user_text, vision.image_tokens)
        budget = len(prompt) + self.generation_config.max_new_tokens
        if budget > self.context_length:  # spec 4.7: never truncate the prompt
            raise InputError(f"prompt ({len(prompt)} tokens) + max_new_tokens "
                             f"({self.generation_config.max_new_tokens}) exceeds the context of {self.context_length}")
        ids = torch.tensor([prompt.ids], dtype=torch.long, device=self.device)
        points = np.asarray(inputs.points)
        if points.ndim != 2 or points.shape[1] != 4:
            raise InputError(f"inputs.points must be (H*W, 4), got {points.shape}")
        kwargs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": (ids == self.image_token_id).to(torch.int32),
            "pixel_values": vision.pixel_values.to(self.device, dtype=self.model.model.visual.dtype),
            "image_grid_thw": vision.image_grid_thw.to(self.device),
        }
        points_t = torch.tensor(points, dtype=torch.float32, device=self.device)  # fresh copy (spec 7 item 24)
        return TurnInputs(prompt, kwargs, points_t, tuple(inputs.map_hw), vision.grid_hw)

    def generate_tokens(self, turn: TurnInputs) -> List[int]:
        """Prefill (vision tower + 3D encoding) and decode; returns the new token ids."""
        import torch

        applied = self.hook.applied
        self.hook.arm(turn.points, turn.map_hw, turn.grid_hw)
        cancelled = self.cancelled
        criteria = None
        if cancelled is not None:
            from transformers import StoppingCriteria, StoppingCriteriaList

            class _WhenCancelled(StoppingCriteria):
                def __call__(self, input_ids, scores, **kwargs):
                    return torch.full((input_ids.shape[0],), cancelled(), dtype=torch.bool, device=input_ids.device)

            criteria = StoppingCriteriaList([_WhenCancelled()])
        try:
            with torch.inference_mode():
                out = self.model.generate(**turn.model_kwargs, generation_config=self.generation_config,
                                          stopping_criteria=criteria)
        finally:
            self.hook.disarm()
        if cancelled is not None and cancelled():
            raise Cancelled(f"cancelled after {out.shape[1] - turn.model_kwargs['input_ids'].shape[1]} generated tokens")
        if self.hook.applied != applied + 1:
            raise RuntimeError(f"the 3D encoding ran {self.hook.applied - applied} times in one generate call, not once")
        return out[0, turn.model_kwargs["input_ids"].shape[1]:].tolist()

    def decode_text(self, token_ids: Sequence[int]) -> str:
        """All new tokens at once (spec 7 item 22: joining streamer chunks corrupts whitespace)."""
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def run_turn(self, inputs, user_text: str, vision: Optional[VisionInputs] = None) -> TurnOutput:
        timings = {}
        start = time.perf_counter()
        if vision is None:
            vision = self.encode_image(inputs)
            timings["preprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        turn = self.build_inputs(inputs, user_text, vision)
        timings["prompt"] = time.perf_counter() - start
        start = time.perf_counter()
        ids = self.generate_tokens(turn)
        timings["generate"] = time.perf_counter() - start
        return TurnOutput(user_text, self.decode_text(ids), ids, len(turn.prompt), timings)

    # ------------------------------------------------------------ turn 1
    def _grounding(self, inputs, user_text: str, mode: str, vision=None) -> Grounding:
        from .protocol.decoding import decode_boxes

        turn = self.run_turn(inputs, user_text, vision)
        start = time.perf_counter()
        parsed = parse_boxes(turn.text)
        boxes = decode_boxes(parsed.boxes, inputs.shift0, inputs.scaling, inputs.intrinsics_n)
        turn.timings["parse"] = time.perf_counter() - start
        return Grounding(turn, parsed, boxes, mode)

    def detect(self, inputs, vision: Optional[VisionInputs] = None) -> Grounding:
        return self._grounding(inputs, detection_text(), "detect", vision)

    def ground(self, inputs, category: str, vision: Optional[VisionInputs] = None) -> Grounding:
        return self._grounding(inputs, grounding_text(category), "ground", vision)

    def ground_question(self, inputs, question: str, vision: Optional[VisionInputs] = None) -> Grounding:
        return self._grounding(inputs, split_text(question), "auto_split", vision)

    # ------------------------------------------------------------ turn 2
    def scene_condition(self, inputs, grounding: Grounding, question: str) -> str:
        """Auto-split: all boxes. After an explicit grounding prompt: the boxes the question names as {id}_{class}."""
        from .protocol.decoding import scene_box

        pairs = [(box.id, box.label) for box in grounding.boxes]
        if grounding.mode == "auto_split":
            selection = auto_split_selection(pairs)
        else:
            selection = referenced_selection(question, pairs)
        return scene_condition([scene_box(grounding.boxes[i], caption, inputs.intrinsics_n)
                                for i, caption in selection])

    def answer(self, inputs, question: str, grounding: Grounding,
               vision: Optional[VisionInputs] = None) -> Tuple[str, str, TurnOutput]:
        """Turn 2: a fresh conversation with the first sentence and the scene condition."""
        turn = self.run_turn(inputs, turn2_text(question, self.scene_condition(inputs, grounding, question)), vision)
        answer, reasoning = split_reasoning(turn.text)
        return answer, reasoning, turn

    def ask(self, inputs, question: str) -> AskResult:
        """Auto-split flow: ground the objects of the question, then answer with their boxes."""
        start = time.perf_counter()
        vision = self.encode_image(inputs)
        timings = {"preprocess": time.perf_counter() - start}
        grounding = self.ground_question(inputs, question, vision)
        answer, reasoning, turn2 = self.answer(inputs, question, grounding, vision)
        for name, turn in (("turn1", grounding.turn), ("turn2", turn2)):
            timings.update({f"{name}_{k}": v for k, v in turn.timings.items()})
        timings["total"] = time.perf_counter() - start
        return AskResult(grounding, answer, reasoning, turn2, timings)

    def close(self) -> None:
        self.hook.remove()
        device_type = getattr(self.device, "type", "cpu")
        self.model = None
        if device_type == "cuda":
            import torch

            torch.cuda.empty_cache()


# ---------------------------------------------------------------- loading
def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    return device


def _quantization_config(quantization: Optional[str], dtype, device: str):
    if quantization is None:
        return None
    if quantization not in QUANTIZATIONS:
        raise InputError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if not device.startswith("cuda"):
        raise InputError(f"{quantization} quantisation needs a CUDA device (bitsandbytes), got {device!r}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise InputError(f"{quantization} quantisation needs bitsandbytes: pip install bitsandbytes") from exc
    from transformers import BitsAndBytesConfig

    # The vision tower (0.7 B) stays in full precision: the 3D encoding is added to its features.
    skip = ["visual", "lm_head"]
    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                                  llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


def _looks_like_path(model: str) -> bool:
    """Hub ids are "owner/name"; anything else (or anything that exists on disk) is a directory."""
    return model.startswith((".", "/", "~")) or model.count("/") != 1 or Path(model).expanduser().exists()


def load_engine(model: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "float32",
                quantization: Optional[str] = None, sampling: Union[str, dict] = "greedy",
                max_new_tokens: int = 1024, local_files_only: bool = False,
                language_model: bool = True) -> N3DEngine:
    """Load a hub id or a local checkpoint directory. float32 matches the official demo; bf16/fp16 are faster.

    Downloads only if ``model`` is a hub id that is not cached and local_files_only is False.
    language_model=False loads the vision tower alone (for a runtime that runs the language model itself):
    the language-model weights are never read, so peak memory is the tower's, not the whole checkpoint's.
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    torch_dtype = getattr(torch, dtype)
    device = resolve_device(device)
    quant = _quantization_config(quantization, torch_dtype, device)
    source = str(Path(model).expanduser()) if _looks_like_path(model) else model
    if _looks_like_path(model) and not (Path(source) / "config.json").is_file():
        raise ModelNotFound(_missing_weights_message(model, f"no config.json in {source}"))
    options = {"local_files_only": local_files_only}
    try:
        config = AutoConfig.from_pretrained(source, **options)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(_missing_weights_message(model, str(exc).splitlines()[0])) from exc
    if config.model_type != "qwen2_5_vl" or config.vision_config.hidden_size != 1280:
        raise InputError(f"{model!r} is a {config.model_type} model with vision width "
                         f"{getattr(config.vision_config, 'hidden_size', '?')}; N3D-VLM needs qwen2_5_vl with 1280")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        # backend "pil": the slow bicubic path of transformers 4.52 the model was run with (spec 3.2, 7 item 17)
        processor = Qwen2VLImageProcessorPil.from_pretrained(source, **options)
        if language_model:
            network = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                source, config=config, dtype=torch_dtype, quantization_config=quant,
                device_map={"": device} if quant is not None else None, **options)
        else:
            if quant is not None:
                raise InputError("quantization applies to the torch language model; without it there is nothing to quantise")
            from .vision.loading import vision_only_model

            network = vision_only_model(source, config, torch_dtype, device, local_files_only)
    except OSError as exc:
        raise ModelNotFound(_missing_weights_message(model, str(exc).splitlines()[0])) from exc
    if quant is None:
        network = network.to(device)
    network.eval()
    return N3DEngine(network, tokenizer, processor, sampling=sampling, max_new_tokens=max_new_tokens, source=source)
