"""The turn-1 output grammar of N3D-VLM as a token-level state machine.

Valid output (spec 5.1/5.2) is zero or more lines

    bbox_{N}=Bbox({class},{U},{V},{Z},{A},{SX},{SY},{SZ})

separated by "\n", with N counting up from 0, a class of 1-64 characters without "," or line breaks whose
parentheses balance (nested at most box_parser.MAX_CLASS_PAREN_DEPTH deep: "mug (red)"), and seven integers 0-999 written without leading zeros (training wrote them with int()). The output
may end (EOS) at the start or after any ")" (optionally followed by "\n").

The grammar is defined over characters, so it accepts every tokenisation of a valid text (e.g. "(" "person"
or "(person"): constraining never changes a valid greedy output. A state is a small immutable tuple;
the allowed-token mask of each state is computed once from the vocabulary and cached.

Written by hand because the grammar is tiny and jump-forward needs to ask "is exactly one token allowed
here?", which the HF logits-processor interface of grammar libraries does not expose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .box_parser import MAX_CLASS_PAREN_DEPTH

MAX_CLASS_CHARS = 64
N_FIELDS = 7
_CLASS_FORBIDDEN = set(",()\n\r")  # characters a class token may not hold to be allowed without a closer look
_CLASS_STRUCTURE = set(",()")       # the ones that may still be allowed, depending on the state

# States: ("lit", text, pos, n)      inside the fixed literal "bbox_{n}=Bbox(" at position pos
#         ("cls", n_chars, depth, n) inside the class name, depth = open parentheses
#         ("int", field, digits, first_is_zero, n)
#         ("close", n)               after ")": "\n" or EOS
#         ("nl", n)                  after ")\n": next line or EOS
State = Tuple


def line_literal(n: int) -> str:
    return f"bbox_{n}=Bbox("


def initial_state() -> State:
    return ("nl", 0)  # like "after a newline" with the next id 0: a line or EOS


def advance_char(state: State, ch: str) -> Optional[State]:
    """The state after one character, or None if the character is not allowed."""
    kind = state[0]
    if kind == "nl":
        return advance_char(("lit", line_literal(state[1]), 0, state[1]), ch)
    if kind == "lit":
        _, text, pos, n = state
        if ch != text[pos]:
            return None
        return ("lit", text, pos + 1, n) if pos + 1 < len(text) else ("cls", 0, 0, n)
    if kind == "cls":
        _, count, depth, n = state
        if ch == ",":
            return ("int", 0, 0, False, n) if count > 0 and depth == 0 else None
        if ch in "\n\r":
            return None
        if ch == "(":
            depth += 1
            if depth > MAX_CLASS_PAREN_DEPTH:
                return None
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return None
        # room must remain for the ")" still open, so that no state is a dead end
        return ("cls", count + 1, depth, n) if count + 1 + depth <= MAX_CLASS_CHARS else None
    if kind == "int":
        _, field, digits, zero, n = state
        if ch.isdigit() and ch.isascii():
            if zero or digits >= 3:
                return None
            return ("int", field, digits + 1, digits == 0 and ch == "0", n)
        if digits == 0:
            return None
        if ch == "," and field < N_FIELDS - 1:
            return ("int", field + 1, 0, False, n)
        if ch == ")" and field == N_FIELDS - 1:
            return ("close", n + 1)
        return None
    if kind == "close":
        return ("nl", state[1]) if ch == "\n" else None
    return None


def advance_text(state: State, text: str) -> Optional[State]:
    for ch in text:
        state = advance_char(state, ch)
        if state is None:
            return None
    return state


def may_end(state: State) -> bool:
    return state[0] in ("nl", "close")


def _mask_key(state: State) -> State:
    """States that allow exactly the same tokens share a key (the line id only matters inside the literal)."""
    kind = state[0]
    if kind == "nl":
        return ("lit", line_literal(state[1]), 0)
    if kind == "lit":
        return state[:3]
    if kind == "cls":
        return state[:3]
    if kind == "int":
        return state[:4]
    return (kind,)


class _ClassSegments:
    """Per token, its class part (the text before its first ',') as parenthesis arithmetic, so that the tokens
    that can follow a class state (count, depth) are found with array operations instead of a loop."""

    def __init__(self, texts: Sequence[str]):
        n = len(texts)
        self.length = np.zeros(n, dtype=np.int64)
        self.lowest = np.zeros(n, dtype=np.int64)   # lowest running depth change (<= 0)
        self.highest = np.zeros(n, dtype=np.int64)  # highest running depth change (>= 0)
        self.change = np.zeros(n, dtype=np.int64)   # depth change over the whole class part
        self.peak = np.zeros(n, dtype=np.int64)     # max over positions i of (i + running depth change)
        self.has_comma = np.zeros(n, dtype=bool)
        self.line_break = np.zeros(n, dtype=bool)
        for k, text in enumerate(texts):
            part, comma, _ = text.partition(",")
            running = 0
            for i, ch in enumerate(part, start=1):
                running += (ch == "(") - (ch == ")")
                self.lowest[k] = min(self.lowest[k], running)
                self.highest[k] = max(self.highest[k], running)
                self.peak[k] = max(self.peak[k], i + running)
            self.length[k], self.change[k], self.has_comma[k] = len(part), running, bool(comma)
            self.line_break[k] = "\n" in part or "\r" in part

    def may_fit(self, count: int, depth: int) -> np.ndarray:
        """Tokens whose class part is allowed from ("cls", count, depth): exact for tokens without a ',';
        for the others only their class part is checked and the caller runs the state machine on the rest."""
        ok = ~self.line_break & (depth + self.lowest >= 0) & (depth + self.highest <= MAX_CLASS_PAREN_DEPTH)
        ok &= count + depth + self.peak <= MAX_CLASS_CHARS
        ends = (depth + self.change == 0) & (count + self.length > 0)  # a ',' needs a closed, non-empty class
        return ok & (~self.has_comma | ends)


@dataclass
class BoxGrammar:
    """Allowed-token masks over a tokenizer's vocabulary for the box grammar."""

    token_texts: Sequence[Optional[str]]  # id -> decoded text, None for special/unusable tokens
    eos_ids: Sequence[int]

    def __post_init__(self) -> None:
        self.vocab_size = len(self.token_texts)
        self._by_first: Dict[str, List[int]] = {}
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        pure_class = np.zeros(self.vocab_size, dtype=bool)
        self._class_structure: List[int] = []  # tokens with "," "(" or ")": checked one by one in a class
        for tid, text in enumerate(self.token_texts):
            if not text:
                continue
            self._by_first.setdefault(text[0], []).append(tid)
            lengths[tid] = len(text)
            chars = set(text)
            pure_class[tid] = not (_CLASS_FORBIDDEN & chars)
            if _CLASS_STRUCTURE & chars:
                self._class_structure.append(tid)
        self._lengths = lengths
        self._pure_class = pure_class
        self._structure = _ClassSegments([self.token_texts[tid] for tid in self._class_structure])
        self._structure_ids = np.asarray(self._class_structure, dtype=np.int64)
        self._cache: Dict[State, np.ndarray] = {}

    @classmethod
    def from_tokenizer(cls, tokenizer, eos_ids: Sequence[int]) -> "BoxGrammar":
        special = set(tokenizer.all_special_ids) | {
            tid for tid, tok in tokenizer.added_tokens_decoder.items() if tok.special
        }
        vocab = max(len(tokenizer), max(special) + 1 if special else 0)
        texts: List[Optional[str]] = []
        for tid in range(vocab):
            if tid in special:
                texts.append(None)
                continue
            text = tokenizer.decode([tid])
            # A byte-level token holding part of a UTF-8 character decodes to U+FFFD: not usable alone.
            texts.append(None if "\ufffd" in text else text)
        return cls(texts, list(eos_ids))

    def allowed(self, state: State) -> np.ndarray:
        """Boolean mask over the vocabulary (EOS included where the output may end)."""
        key = _mask_key(state)
        mask = self._cache.get(key)
        if mask is None:
            mask = self._compute(state)
            self._cache[key] = mask
        return mask

    def _compute(self, state: State) -> np.ndarray:
        mask = np.zeros(self.vocab_size, dtype=bool)
        if state[0] == "cls":
            room = MAX_CLASS_CHARS - state[1] - state[2]
            mask |= self._pure_class & (self._lengths <= room) & (self._lengths > 0)
            # a token with ',' or parentheses is allowed wherever its characters fit the state (" (", "red)",
            # "),1"): a vectorised pre-filter on its class part, then the state machine on the survivors
            fits = self._structure.may_fit(state[1], state[2])
            mask[self._structure_ids[fits & ~self._structure.has_comma]] = True  # exact without a ','
            candidates = self._structure_ids[fits & self._structure.has_comma].tolist()
        else:
            probe = ("lit", line_literal(state[1]), 0, state[1]) if state[0] == "nl" else state
            first_chars = self._first_chars(probe)
            candidates = [tid for ch in first_chars for tid in self._by_first.get(ch, [])]
        for tid in candidates:
            if advance_text(state, self.token_texts[tid]) is not None:
                mask[tid] = True
        if may_end(state):
            mask[[e for e in self.eos_ids if e < self.vocab_size]] = True
        return mask

    @staticmethod
    def _first_chars(state: State) -> List[str]:
        kind = state[0]
        if kind == "lit":
            return [state[1][state[2]]]
        if kind == "int":
            return list("0123456789,)")
        if kind == "close":
            return ["\n"]
        return []

    def advance(self, state: State, token_id: int) -> State:
        text = self.token_texts[token_id] if token_id < self.vocab_size else None
        new_state = advance_text(state, text) if text else None
        if new_state is None:
            raise ValueError(f"token {token_id} ({text!r}) is not allowed in state {state}")
        return new_state

    def forced_token(self, state: State) -> Optional[int]:
        """The only allowed token in this state, or None when the model has a choice (EOS counts as one)."""
        allowed = np.flatnonzero(self.allowed(state))
        return int(allowed[0]) if len(allowed) == 1 and int(allowed[0]) not in self.eos_ids else None


class BoxDrafter:
    """Guesses the next tokens of a box line, for verification by the model (see fast_decode.decode).

    It drafts the fixed scaffold ("_3=Bbox(", "," after three digits, ")\\n" after the last field), the class
    of the previous line (or the phrase being grounded), "," after every digit, and "500" for the yaw bin
    (every released output of the model has yaw bin 500). A wrong guess costs only width in a forward pass
    the model runs anyway: it is rejected at the first token the model disagrees with.

    guesses=False keeps to what the model all but always writes: the scaffold once a field is over (three
    digits, or a lone 0), the line literal, the yaw bin after it. It drops the guesses that are often wrong
    ("," after a digit that more digits may follow, the class, "," inside a class). That is for runtimes
    where width is not free (a CPU is compute-bound: a 4-token pass costs 2-3 single ones), where rejected
    guesses cost more than the passes they save.
    """

    def __init__(self, grammar: BoxGrammar, tokenizer, hint_class: Optional[str] = None, guesses: bool = True):
        self.grammar = grammar
        self.tokenizer = tokenizer
        self.hint_class = hint_class
        self.guesses = guesses

    def _last_class(self, generated: List[int]) -> Optional[str]:
        text = self.tokenizer.decode(generated)
        start = text.rfind("Bbox(")
        end = text.find(",", start)
        if start >= 0 and end > start:
            return text[start + 5:end]
        return self.hint_class

    def _text(self, state: State, generated: List[int]) -> str:
        kind = state[0]
        if kind in ("nl", "lit"):
            n = state[-1]
            literal = line_literal(n)[state[2]:] if kind == "lit" else line_literal(n)
            cls = self._last_class(generated) if self.guesses else None
            return literal + (cls + "," if cls else "")
        if kind == "close":  # the model wrote ")" alone, not ")\n": it usually ends here
            return "\n" + line_literal(state[1]) if self.guesses else ""
        if kind == "int":
            _, field, digits, zero, n = state
            if digits == 0:  # right after a ",": only the yaw bin is known
                return "500," if field == 3 else ""
            if not (self.guesses or digits == 3 or zero):
                return ""  # the number may go on: leave it to the model
            if field == N_FIELDS - 1:
                return ")\n" + line_literal(n + 1)
            return "," + ("500," if field + 1 == 3 else "")
        return "," if self.guesses else ""  # inside a class: guess that it ends here

    def __call__(self, state: State, generated: List[int]) -> List[int]:
        text = self._text(state, generated)
        draft: List[int] = []
        for tid in self.tokenizer.encode(text, add_special_tokens=False):
            if not self.grammar.allowed(state)[tid]:
                break
            draft.append(tid)
            state = self.grammar.advance(state, tid)
        return draft
