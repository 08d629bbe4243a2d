"""The box grammar with parentheses in class names (issue 12 item 12): what the constrained decoder allows."""

from __future__ import annotations

import numpy as np
import pytest

from n3d_ros.engine.protocol.box_grammar import BoxGrammar, MAX_CLASS_CHARS, advance_char, advance_text, initial_state
from n3d_ros.engine.protocol.tokenizer import offline_qwen_tokenizer
from test_engine_speed import EOS, run_scripted


@pytest.fixture(scope="module")
def grammar():
    tokenizer = offline_qwen_tokenizer()
    return tokenizer, BoxGrammar.from_tokenizer(tokenizer, EOS)


def test_the_constrained_decoder_allows_balanced_parentheses_only(grammar):
    tokenizer, box_grammar = grammar
    good = "bbox_0=Bbox(mug (red),519,587,394,500,278,254,199)\nbbox_1=Bbox(a (b (c)),1,2,3,500,5,6,7)"
    for use_draft in (False, True):
        out, _, script = run_scripted(tokenizer, box_grammar, good, True, use_draft)
        assert out == script  # the model's own tokens, unchanged by the constraint
    for bad, kept in (("bbox_0=Bbox(mug red),1,2,3,500,5,6,7)", "bbox_0=Bbox(mug red"),
                      ("bbox_0=Bbox(mug (red,1,2,3,500,5,6,7)", "bbox_0=Bbox(mug (red"),
                      ("bbox_0=Bbox(a (b (c (d))),1,2,3,500,5,6,7)", "bbox_0=Bbox(a (b (c")):
        out, _, script = run_scripted(tokenizer, box_grammar, bad, True, True)
        text = tokenizer.decode(out)
        assert out != script and text.startswith(kept), text  # steered away where the text breaks the rule


def test_no_grammar_state_inside_a_class_is_a_dead_end():
    state = advance_text(initial_state(), "bbox_0=Bbox(" + "x" * (MAX_CLASS_CHARS - 5) + "((")
    state = advance_char(state, "x")  # 62 characters, 2 still open: exactly room for the two closers
    assert state is not None and advance_char(state, "x") is None and advance_char(state, "(") is None
    assert advance_text(state, "))") is not None and advance_text(state, ")),1,2,3,500,5,6,7)") is not None
    assert advance_text(state, "),") is None  # a class cannot end with a parenthesis open


@pytest.mark.parametrize("count, depth", [(0, 0), (4, 1), (10, 2), (61, 2), (63, 0), (64, 0)])
def test_class_masks_equal_the_state_machine_on_every_token(grammar, count, depth):
    """The vectorised pre-filter for tokens with ',' '(' ')' must not change a single mask bit."""
    _, box_grammar = grammar
    state = ("cls", count, depth, 0)
    brute = np.array([bool(text) and advance_text(state, text) is not None for text in box_grammar.token_texts])
    assert np.array_equal(box_grammar.allowed(state), brute)
