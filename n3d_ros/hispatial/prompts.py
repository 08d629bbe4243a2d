"""HiSpatial prompts: the templates of hispatial-spec section 5, byte for byte, and their token ids.

Layout (spec 1.2, 5.1): <image> x 1024, <bos>, the stripped question, "\n". We build the ids ourselves rather
than handing text to PaliGemmaProcessor, because the processor parses special tokens anywhere in the string:
user text is tokenised with split_special_tokens and refused if it still yields a reserved id, and location
tokens enter only through :func:`loc_tokens` from pixel coordinates. The ids equal the processor's for any
clean question (tested).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from ..core.types import InputError

IMAGE_SEQ_LENGTH = 1024
MODEL_SIZE = 448
BOX_COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
               "purple": (255, 0, 255)}
COT_SUFFIXES = (" Please think step by step", " Answer the question with cot", " Explain your reasoning step by step",
                " Please provide a detailed explanation with cot")
YES_NO_SUFFIX = " Answer with Yes or No."
# PaliGemma/Gemma control sequences a user could type: <image>, <bos>, <eos>, <pad>, <unk>, <mask>,
# <locNNNN>, <segNNN>, <start_of_turn>, <end_of_turn>, <unusedN>, [multimodal], [@BOS@].
_CONTROL = re.compile(r"<(?:image|bos|eos|pad|unk|mask|loc\d{4}|seg\d{3}|start_of_turn|end_of_turn|unused\d+)>"
                      r"|\[multimodal\]|\[@BOS@\]", re.IGNORECASE)


@dataclass(frozen=True)
class PromptIds:
    ids: List[int]
    text: str  # the question as the model reads it (no image tokens, no <bos>, no trailing "\n")

    def __len__(self) -> int:
        return len(self.ids)


# ------------------------------------------------------------------ templates (spec 5.2-5.5)
def _object(phrase: str) -> str:
    """The phrase without a leading article: templates say "the {object}"."""
    phrase = " ".join(str(phrase).split())
    phrase = re.sub(r"^(?:the|a|an)\s+", "", phrase, flags=re.IGNORECASE)
    if not phrase:
        raise InputError("object phrase is empty: name the object, e.g. 'red mug'")
    return phrase


def aabb_question(phrase: str) -> str:
    """3D AABB grounding (query_aabb): 'detect the aabb of the woman in white tennis attire ...'."""
    return f"detect the aabb of the {_object(phrase)}"


def camera_distance_question(phrase: str) -> str:
    return f"How far is the {_object(phrase)} from the camera?"


def distance_question(first: str, second: str) -> str:
    return f"What is the distance between the {_object(first)} and the {_object(second)}?"


def height_question(phrase: str) -> str:
    return f"How tall would you say the {_object(phrase)} appears to be?"


def width_question(phrase: str) -> str:
    return f"How far does the {_object(phrase)} stretch from side to side?"


def yes_no_question(question: str) -> str:
    """'True or False' becomes 'Yes or No' (training rewrite); otherwise the Yes/No instruction is appended."""
    question = question.strip()
    if re.search(r"true or false", question, re.IGNORECASE):
        return re.sub(r"true or false", "Yes or No", question, flags=re.IGNORECASE)
    return question + YES_NO_SUFFIX


def multiple_choice_question(question: str, options: Sequence[str]) -> Tuple[str, List[str]]:
    """question + one 'A. option' line per option (the form the eval scripts use); returns (text, labels)."""
    if not 2 <= len(options) <= 26:
        raise InputError(f"multiple choice needs 2 to 26 options, got {len(options)}")
    labels = [chr(ord("A") + i) for i in range(len(options))]
    lines = [f"{label}. {' '.join(str(option).split())}" for label, option in zip(labels, options)]
    return question.strip() + "\n" + "\n".join(lines), labels


def loc_value(coordinate: float, size: float = MODEL_SIZE) -> int:
    """round(coord / 448 * 1024) on the 448 image (not PaliGemma's floor binning), clipped to 0..1023."""
    return min(max(int(round(coordinate / size * 1024)), 0), 1023)


def loc_tokens(col_448: float, row_448: float) -> str:
    """<loc{y}><loc{x}><loc{y}><loc{x}> for one pixel of the 448x448 image."""
    y, x = loc_value(row_448), loc_value(col_448)
    return f"<loc{y:04d}><loc{x:04d}><loc{y:04d}><loc{x:04d}>"


def pixel_xyz_question(col_448: float, row_448: float) -> str:
    """The level-0 query generated in the reference code: 'what is the xyz of the pixel in <loc...>'."""
    return "what is the xyz of the pixel in " + loc_tokens(col_448, row_448)


# ------------------------------------------------------------------ token ids
def check_user_text(text: str) -> str:
    """The stripped text, or InputError if it is empty or contains a model control sequence."""
    if not isinstance(text, str):
        raise InputError(f"question must be text, got {type(text).__name__}")
    match = _CONTROL.search(text)
    if match:
        raise InputError(f"question contains the model control sequence {match.group(0)!r}; remove it")
    text = text.strip()
    if not text:
        raise InputError("question is empty")
    return text


class PromptEncoder:
    """Token ids of HiSpatial prompts for one tokenizer (the checkpoint's, or the offline test one)."""

    def __init__(self, tokenizer, image_seq_length: int = IMAGE_SEQ_LENGTH):
        self.tokenizer = tokenizer
        self.image_seq_length = image_seq_length
        self.image_id = self._id("<image>")
        self.bos_id = self._id("<bos>")
        self.eos_id = self._id("<eos>")
        self.loc0_id = self._id("<loc0000>")
        if self._id("<loc1023>") != self.loc0_id + 1023:
            raise InputError("tokenizer's <loc0000>..<loc1023> are not consecutive: not a PaliGemma tokenizer")
        # Special tokens, added control tokens (<start_of_turn>, <unusedN>) and the <loc>/<seg>/<image> block
        # are reserved for our own code. Other added tokens (Gemma adds whitespace runs such as "\n\n") are text.
        self.reserved = set(tokenizer.all_special_ids) | {
            i for i, token in tokenizer.added_tokens_decoder.items() if _CONTROL.fullmatch(token.content)}
        self.first_reserved_block = self.loc0_id

    def _id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise InputError(f"tokenizer has no {token}: is this a PaliGemma/HiSpatial checkpoint?")
        return int(token_id)

    def _text_ids(self, text: str) -> List[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
        bad = sorted({self.tokenizer.convert_ids_to_tokens(i) for i in ids
                      if i in self.reserved or i >= self.first_reserved_block})
        if bad:
            raise InputError(f"question yields reserved token(s) {bad}; remove them")
        return ids

    def encode(self, question: str, pixels: Sequence[Tuple[float, float]] = ()) -> PromptIds:
        """Ids of "<image>"x1024 <bos> question "\n". ``pixels``: (col, row) points of the 448 image, each
        written where the question has a "{pixel}" placeholder, as <loc> tokens (trusted, from our code)."""
        text = check_user_text(question)
        pieces = text.split("{pixel}") if pixels else [text]  # without pixels "{pixel}" is the user's text
        if len(pieces) - 1 != len(pixels):
            raise InputError(f"question has {len(pieces) - 1} {{pixel}} placeholders for {len(pixels)} pixels")
        ids = [self.image_id] * self.image_seq_length + [self.bos_id]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            if piece or last:
                ids += self._text_ids(piece + ("\n" if last else ""))  # the processor's "\n", tokenised with the text
            if not last:
                col, row = pixels[index]
                y, x = loc_value(row), loc_value(col)
                ids += [self.loc0_id + y, self.loc0_id + x, self.loc0_id + y, self.loc0_id + x]
        shown = text
        for col, row in pixels:
            shown = shown.replace("{pixel}", loc_tokens(col, row), 1)
        return PromptIds(ids=ids, text=shown)
