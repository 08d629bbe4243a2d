"""The HiSpatial network on stock transformers 5.x PaliGemma classes, and the engine that runs one question.

Network: ``PaliGemmaForConditionalGeneration`` from the checkpoint's PaliGemmaConfig, with the projector's
Linear widened to [SigLIP | depth] -> text width and a ``depth_encoder`` module next to it (spec 4.4 option A).
Engine: the image features (SigLIP + depth encoder + projector) are computed once per frame; each prompt's
embeddings are the token embeddings (x sqrt(hidden) inside Gemma's embed_tokens) with the raw features
scattered into the 1024 <image> positions, exactly what PaliGemmaModel.forward does with pixel_values
(spec 4.4 option C; ``mm_encoder_outputs`` would do the same but transformers 5.17 lacks it). generate() runs
the prefill from these embeddings and decodes from the KV cache; ``token_type_ids`` = 0 over the prompt give
the bidirectional prefix (without them 5.x prefills causally); greedy, eos <eos>, pad <pad>.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

from ..core.types import Cancelled, InputError
from .answers import clean
from .depth import DepthEncoder
from .prompts import MODEL_SIZE, PromptEncoder, PromptIds

DEFAULT_MAX_NEW_TOKENS = 100  # the reference predictor and every eval script
COT_MAX_NEW_TOKENS = 384      # chain-of-thought answers run ~150 tokens (spec 4.3)


@functools.lru_cache(maxsize=1)
def network_class():
    """Stock PaliGemmaForConditionalGeneration whose generate() may start from prompt embeddings: its own
    prepare_inputs_for_generation takes them only through **kwargs, which generate() refuses to rely on."""
    from transformers import PaliGemmaForConditionalGeneration

    class HiSpatialForConditionalGeneration(PaliGemmaForConditionalGeneration):
        def prepare_inputs_for_generation(self, input_ids, inputs_embeds=None, **kwargs):
            return super().prepare_inputs_for_generation(input_ids, inputs_embeds=inputs_embeds, **kwargs)

    return HiSpatialForConditionalGeneration


def build_network(config):
    """The PaliGemma network with HiSpatial's projector and depth encoder (weights as created)."""
    from torch import nn

    network = network_class()(config)
    vision = config.vision_config
    text_width = config.text_config.hidden_size
    inner = network.model
    inner.multi_modal_projector.linear = nn.Linear(2 * vision.hidden_size, text_width, bias=True)
    inner.depth_encoder = DepthEncoder(vision.hidden_size, vision.patch_size)
    return network


def check_config(config, source: str = "") -> None:
    """InputError unless the config describes a PaliGemma with the 448-px, 14-px-patch SigLIP HiSpatial uses."""
    where = f" ({source})" if source else ""
    if getattr(config, "model_type", None) != "paligemma":
        raise InputError(f"HiSpatial needs a paligemma config.json{where}, got model_type "
                         f"{getattr(config, 'model_type', None)!r}: is this the lhzzzzzy/HiSpatial-3B checkpoint?")
    vision = config.vision_config
    if vision.image_size != MODEL_SIZE or MODEL_SIZE % vision.patch_size:
        raise InputError(f"HiSpatial needs a {MODEL_SIZE}-px vision tower with a patch dividing it{where}, got "
                         f"image_size {vision.image_size}, patch {vision.patch_size}")
    if config.text_config.hidden_size != getattr(config, "projection_dim", config.text_config.hidden_size):
        raise InputError(f"projection_dim {config.projection_dim} differs from the text width "
                         f"{config.text_config.hidden_size}{where}")


@dataclass
class FrameFeatures:
    """Image-token embeddings of one frame ([1, 1024, text width]), reusable for every question on it."""

    features: object
    seconds: float


@dataclass
class HiSpatialOutput:
    prompt: PromptIds
    text: str  # decoded with special tokens kept (spec 4.3), then <eos> stripped
    token_ids: List[int]
    timings: dict = field(default_factory=dict)


class HiSpatialEngine:
    def __init__(self, network, tokenizer, image_processor, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 source: str = ""):
        check_config(network.config, source)
        self.network = network
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.source = source
        vision = network.config.vision_config
        self.image_tokens = (vision.image_size // vision.patch_size) ** 2
        self.prompts = PromptEncoder(tokenizer, self.image_tokens)
        if self.prompts.image_id != network.config.image_token_id:
            raise InputError(f"tokenizer's <image> is id {self.prompts.image_id} but the config says "
                             f"{network.config.image_token_id}: tokenizer and weights do not belong together")
        if not 1 <= max_new_tokens <= 4096:
            raise InputError(f"max_new_tokens must be in [1, 4096], got {max_new_tokens}")
        self.max_new_tokens = max_new_tokens
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        # Set per request by the caller: True once nobody waits for the answer (polled every decode step).
        self.cancelled: Optional[Callable[[], bool]] = None

    @property
    def device(self):
        return self.network.device

    @property
    def context_length(self) -> int:
        return int(self.network.config.text_config.max_position_embeddings)

    # ------------------------------------------------------------ image side
    def pixel_values(self, rgb448):
        """The processor's [1, 3, 448, 448] in [-1, 1]; the image is already 448 (cv2 bilinear), so the
        processor's own bicubic resize is an identity and never runs on other sizes (spec 1.1)."""
        if getattr(rgb448, "shape", None) != (MODEL_SIZE, MODEL_SIZE, 3):
            raise InputError(f"image must be {MODEL_SIZE}x{MODEL_SIZE}x3 RGB (pointmap.build_xyz_inputs), got "
                             f"{getattr(rgb448, 'shape', type(rgb448).__name__)}")
        return self.image_processor(images=[rgb448], return_tensors="pt")["pixel_values"]

    def encode_frame(self, inputs) -> FrameFeatures:
        """SigLIP + depth encoder + projector for a pointmap.HiSpatialInputs: once per frame."""
        import torch
        from .depth import fused_image_features

        start = time.perf_counter()
        pixels = self.pixel_values(inputs.rgb).to(self.device)
        xyz = torch.as_tensor(inputs.xyz, dtype=torch.float32, device=self.device)[None]  # fp32 (spec 2.1)
        with torch.inference_mode():
            features = fused_image_features(self.network, pixels, xyz)
        return FrameFeatures(features, time.perf_counter() - start)

    # ------------------------------------------------------------ text side
    def generate(self, frame: FrameFeatures, prompt: PromptIds,
                 max_new_tokens: Optional[int] = None) -> HiSpatialOutput:
        import torch

        budget = max_new_tokens or self.max_new_tokens
        if len(prompt) + budget > self.context_length:
            raise InputError(f"prompt ({len(prompt)} tokens) + {budget} new tokens exceed the context of "
                             f"{self.context_length}")
        ids = torch.tensor([prompt.ids], dtype=torch.long, device=self.device)
        criteria = self._stopping_criteria()
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.network.generate(
                input_ids=ids, inputs_embeds=self.prompt_embeddings(ids, frame.features),
                attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids), max_new_tokens=budget, do_sample=False, num_beams=1, eos_token_id=self.prompts.eos_id,
                pad_token_id=self.pad_id, stopping_criteria=criteria, use_cache=True,
                temperature=None, top_p=None, top_k=None)
        new = out[0, ids.shape[1]:].tolist()
        seconds = time.perf_counter() - start
        if self.cancelled is not None and self.cancelled():
            raise Cancelled(f"cancelled after {len(new)} generated tokens")
        return HiSpatialOutput(prompt, self.decode_text(new), new, {"generate": seconds, "new_tokens": float(len(new))})

    def decode_text(self, token_ids: Sequence[int]) -> str:
        """All new tokens at once, special tokens kept (<loc> answers are text), then <eos> stripped."""
        return clean(self.tokenizer.decode(list(token_ids), skip_special_tokens=False))

    def prompt_embeddings(self, ids, features):
        """[1, L, hidden] prefill embeddings: token embeddings, the image features at the <image> positions."""
        import torch

        image = ids == self.prompts.image_id
        if int(image.sum()) != features.shape[0] * features.shape[1]:
            raise InputError(f"prompt has {int(image.sum())} <image> tokens for {features.shape[1]} image features")
        vocab = self.network.config.text_config.vocab_size
        with torch.inference_mode():
            embeds = self.network.get_input_embeddings()(ids.masked_fill(ids >= vocab, 0))
            return embeds.masked_scatter(image[..., None], features.to(embeds.device, embeds.dtype))

    def _stopping_criteria(self):
        cancelled = self.cancelled
        if cancelled is None:
            return None
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _WhenCancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancelled(), dtype=torch.bool, device=input_ids.device)

        return StoppingCriteriaList([_WhenCancelled()])

    def ask(self, frame: FrameFeatures, question: str, pixels: Sequence[Tuple[float, float]] = (),
            max_new_tokens: Optional[int] = None) -> HiSpatialOutput:
        """One question (the text the model reads; {pixel} placeholders filled from ``pixels``)."""
        return self.generate(frame, self.prompts.encode(question, pixels), max_new_tokens)

    def close(self) -> None:
        device_type = getattr(self.device, "type", "cpu")
        self.network = None
        if device_type == "cuda":
            import torch

            torch.cuda.empty_cache()
