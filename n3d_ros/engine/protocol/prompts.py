"""N3D-VLM prompts, byte-exact to the official demo (spec section 4).

Texts are assembled as the demo does (``<image>`` and ``<code_template>`` placeholders, then expansion), and
turned into ids block by block: special tokens are inserted as ids, the text between them is encoded with
special-token matching off. Every block boundary in the official template is a special token, so this equals
tokenising the demo's concatenated string, while user text can never produce a special id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from ...core.types import InputError
from .tokenizer import encode_user_text, special_id

SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
IMAGE_PLACEHOLDER = "<image>"
CODE_PLACEHOLDER = "<code_template>"
# config/code_template.txt: LF endings, 4-space indents, no trailing newline.
CODE_TEMPLATE = "\n".join([
    "@dataclass",
    "class Bbox:",
    "    class: str",
    "    position_u: int",
    "    position_v: int",
    "    position_z: int",
    "    angle_y: int",
    "    scale_x: int",
    "    scale_y: int",
    "    scale_z: int",
])
# "as followed" is the released wording; the model was trained on it.
DETECTION_TEXT = "<image>Detect boxes. The reference code is as followed: <code_template>"
GROUNDING_TEXT = "<image>Identify the 3D boxes for all the '{category}' in this scene. The reference code is as followed: <code_template>"
SPLIT_TEMPLATE = " First locate the bbox of the aforementioned object(s). The reference code is as followed: <code_template>"

_FIRST_SENTENCE = re.compile(r"(.+?[.?])")
_REFERENCE = re.compile(r"\b\d+_[a-zA-Z0-9]+(?: [a-zA-Z0-9]+)*")


def check_user_text(text: str, what: str) -> str:
    """Reject text that would change the prompt's structure once placeholders are expanded."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{what} is empty")
    for placeholder in (IMAGE_PLACEHOLDER, CODE_PLACEHOLDER):
        if placeholder in text:
            raise InputError(f"{what} contains the prompt placeholder {placeholder!r}; remove it")
    return text


def _finish_turn1(text: str, auto_split: bool) -> str:
    """demo.py's assembly: prefix <image>, optional split suffix, append the code template if absent."""
    if IMAGE_PLACEHOLDER not in text:
        text = IMAGE_PLACEHOLDER + text
    if auto_split:
        text = text + SPLIT_TEMPLATE
    if CODE_PLACEHOLDER not in text:
        text = text + CODE_PLACEHOLDER
    return text.replace(CODE_PLACEHOLDER, CODE_TEMPLATE)


def detection_text() -> str:
    return _finish_turn1(DETECTION_TEXT, auto_split=False)


def grounding_text(category: str) -> str:
    """The category is quoted as typed (demo1: 'hotair ballon')."""
    return _finish_turn1(GROUNDING_TEXT.format(category=check_user_text(category, "category")), auto_split=False)


def split_text(question: str) -> str:
    """Auto-split turn 1: the whole question, then SPLIT_TEMPLATE and the code template."""
    return _finish_turn1(check_user_text(question, "question"), auto_split=True)


def first_sentence(question: str) -> str:
    """The shortest prefix ending in '.' or '?' (cuts at decimals and "e.g." too, as the demo does)."""
    match = _FIRST_SENTENCE.match(question)
    return match.group(1) if match else question


# ---------------------------------------------------------------- scene condition (spec 4.5)
def _round_list(values: Sequence[float]) -> List[float]:
    # float() first: numpy >= 2 would print np.float64(...) inside a list repr.
    return [round(float(v), 2) for v in values]


@dataclass(frozen=True)
class SceneBox:
    """One box as turn 2 sees it: caption, [x, y, z, sx, sy, sz] (N3D frame, metres), [cu, cv, w, h] (0-1)."""

    caption: str
    box3d: Tuple[float, ...]
    box2d: Tuple[float, ...]


def scene_condition(boxes: Sequence[SceneBox]) -> str:
    """The sentence(s) appended to the turn-2 question; "" when there are no boxes."""
    if not boxes:
        return ""
    caps = [b.caption for b in boxes]
    big = [str(_round_list(b.box3d)) for b in boxes]
    small = [str(_round_list(b.box2d)) for b in boxes]
    if len(boxes) == 1:
        return f" The 3D bbox of {caps[0]} is {big[0]}. The 2D bbox of {caps[0]} is {small[0]}. "
    if len(boxes) == 2:
        return (f" The 3D bbox of {caps[0]} is {big[0]}. The 3D bbox of {caps[1]} is {big[1]}."
                f" The 2D bbox of {caps[0]} is {small[0]}. The 2D bbox of {caps[1]} is {small[1]}. ")
    if len(boxes) == 3:
        return (f" The 3D bbox of {caps[0]}, {caps[1]} and {caps[2]} is {big[0]}, {big[1]} and {big[2]}."
                f" The 2D bbox of {caps[0]}, {caps[1]} and {caps[2]} is {small[0]}, {small[1]} and {small[2]}. ")
    all_big = str([_round_list(b.box3d) for b in boxes])
    all_small = str([_round_list(b.box2d) for b in boxes])
    return f" The 3D bbox of {caps} is {all_big}. The 2D bbox of {caps} is {all_small}. "


def normalized_label(label: str) -> str:
    return " ".join(label.split())


def auto_split_selection(boxes: Sequence[Tuple[int, str]]) -> List[Tuple[int, str]]:
    """(index, caption) for every box: plain class names for <= 3 boxes, "{id}_{class}" beyond."""
    if len(boxes) <= 3:
        return [(i, normalized_label(label)) for i, (_, label) in enumerate(boxes)]
    return [(i, f"{box_id}_{normalized_label(label)}") for i, (box_id, label) in enumerate(boxes)]


def referenced_selection(question: str, boxes: Sequence[Tuple[int, str]]) -> List[Tuple[int, str]]:
    """Given-question mode: the boxes the question names as "{id}_{class}", in order, duplicates kept.

    Same regex and case-sensitive lookup as the demo (spec 7 item 12), so references the demo misses are
    missed here too: the model was trained on exactly these conditions.
    """
    index = {}
    for i, (box_id, label) in enumerate(boxes):
        index.setdefault(f"{box_id}_{normalized_label(label)}", i)
    return [(index[ref], ref) for ref in _REFERENCE.findall(question) if ref in index]


def turn2_text(question: str, condition: str) -> str:
    check_user_text(question, "question")
    return IMAGE_PLACEHOLDER + first_sentence(question) + condition


# ---------------------------------------------------------------- token ids
@dataclass
class Prompt:
    """Token ids of one single-turn conversation and where its image tokens sit."""

    ids: List[int]
    image_start: int  # index of the first <|image_pad|>
    image_tokens: int
    user_text: str  # the user content with <image> still a placeholder (for logs and tests)

    def __len__(self) -> int:
        return len(self.ids)


def build_prompt(tokenizer, user_text: str, image_tokens: int, system: str = SYSTEM_PROMPT) -> Prompt:
    """The n3d_vlm template around ``user_text``, which must start with <image> (expanded to image_tokens pads)."""
    if not user_text.startswith(IMAGE_PLACEHOLDER) or user_text.count(IMAGE_PLACEHOLDER) != 1:
        raise InputError("user text must start with exactly one <image> placeholder")
    if image_tokens < 1:
        raise InputError(f"image_tokens must be positive, got {image_tokens}")
    im_start, im_end = special_id(tokenizer, "<|im_start|>"), special_id(tokenizer, "<|im_end|>")
    vision_start, vision_end = special_id(tokenizer, "<|vision_start|>"), special_id(tokenizer, "<|vision_end|>")
    pad = special_id(tokenizer, "<|image_pad|>")
    text = lambda s: encode_user_text(tokenizer, s)  # noqa: E731
    ids = [im_start] + text("system\n" + system) + [im_end] + text("\n")
    ids += [im_start] + text("user\n") + [vision_start]
    image_start = len(ids)
    ids += [pad] * image_tokens + [vision_end]
    ids += text(user_text[len(IMAGE_PLACEHOLDER):]) + [im_end] + text("\n") + [im_start] + text("assistant\n")
    return Prompt(ids=ids, image_start=image_start, image_tokens=image_tokens, user_text=user_text)


def render_prompt(user_text: str, image_tokens: int, system: str = SYSTEM_PROMPT) -> str:
    """The demo's prompt string with special tokens spelled out (what build_prompt tokenises)."""
    image = "<|vision_start|>" + "<|image_pad|>" * image_tokens + "<|vision_end|>"
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"
            f"{user_text.replace(IMAGE_PLACEHOLDER, image, 1)}<|im_end|>\n<|im_start|>assistant\n")
