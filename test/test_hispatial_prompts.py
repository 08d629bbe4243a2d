"""HiSpatial prompts and answers against the verbatim examples of hispatial-spec 5.5, and token-id safety."""

from __future__ import annotations

import numpy as np
import pytest

from n3d_ros.core.types import InputError
from n3d_ros.hispatial.answers import aabb_to_box, clean, parse_aabb, parse_answer
from n3d_ros.hispatial.prompts import (PromptEncoder, aabb_question, camera_distance_question, distance_question,
                                       height_question, loc_tokens, loc_value, multiple_choice_question,
                                       pixel_xyz_question, width_question, yes_no_question)
from n3d_ros.hispatial.tiny import cached_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint():
    return cached_tiny_checkpoint()


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(checkpoint))


@pytest.fixture(scope="module")
def encoder(tokenizer):
    return PromptEncoder(tokenizer)


# ------------------------------------------------------------------ templates, verbatim
def test_templates_reproduce_the_spec_questions():
    assert aabb_question("woman in white tennis attire holding a racket and standing near the net on the left "
                         "side of the court") == ("detect the aabb of the woman in white tennis attire holding a "
                                                  "racket and standing near the net on the left side of the court")
    assert aabb_question("the red mug") == "detect the aabb of the red mug"
    assert camera_distance_question("woman") == "How far is the woman from the camera?"
    assert distance_question("golf club", "man in a light blue polo shirt") == \
        "What is the distance between the golf club and the man in a light blue polo shirt?"
    assert height_question("faucet") == "How tall would you say the faucet appears to be?"
    assert width_question("door") == "How far does the door stretch from side to side?"


def test_location_tokens_round_on_the_448_image():
    # spec: "what is the xyz of the pixel in <loc0325><loc0951><loc0325><loc0951>"; y first, round(c / 448 * 1024)
    col, row = 951 * 448 / 1024, 325 * 448 / 1024
    assert pixel_xyz_question(col, row) == "what is the xyz of the pixel in <loc0325><loc0951><loc0325><loc0951>"
    assert loc_value(0.2187) == 0 and loc_value(0.22) == 1  # round, not floor (0.22 / 448 * 1024 = 0.503)
    assert loc_value(447.9) == 1023 and loc_value(-3) == 0
    assert loc_tokens(0, 447.9) == "<loc1023><loc0000><loc1023><loc0000>"


def test_multiple_choice_and_yes_no_forms():
    text, labels = multiple_choice_question("Which side of the sports car is facing the camera?",
                                            ["back", "left", "front", "right"])
    assert text == "Which side of the sports car is facing the camera?\nA. back\nB. left\nC. front\nD. right"
    assert labels == ["A", "B", "C", "D"]
    assert yes_no_question("Is the cup left of the plate?") == "Is the cup left of the plate? Answer with Yes or No."
    assert yes_no_question("True or False: the cup is red.") == "Yes or No: the cup is red."


# ------------------------------------------------------------------ token ids
def test_ids_equal_the_paligemma_processor(checkpoint, tokenizer, encoder):
    from transformers import PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    image_processor = SiglipImageProcessorPil.from_pretrained(str(checkpoint))
    image_processor.image_seq_length = 1024
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    image = np.zeros((448, 448, 3), dtype=np.uint8)
    for question in ["How far is the woman from the camera?",
                     "Between the chair and the cello, which one is positioned on the right side?\n1. the cello\n2. the chair",
                     "  Which object is closer to the camera, the chair or the table?  "]:
        reference = processor(text="<image>" + question.strip(), images=image, return_tensors="np")
        ours = encoder.encode(question)
        assert ours.ids == reference["input_ids"][0].tolist()
        assert set(reference["token_type_ids"][0].tolist()) == {0}  # the whole prompt is the bidirectional prefix
    ids = encoder.encode("How far is the woman from the camera?").ids
    assert ids[:1024] == [encoder.image_id] * 1024 and ids[1024] == encoder.bos_id
    assert tokenizer.decode(ids[1025:]) == "How far is the woman from the camera?\n"


def test_pixel_placeholder_becomes_location_ids(encoder, tokenizer):
    col, row = 951 * 448 / 1024, 325 * 448 / 1024
    prompt = encoder.encode("what is the xyz of the pixel in {pixel}", [(col, row)])
    assert prompt.text == "what is the xyz of the pixel in <loc0325><loc0951><loc0325><loc0951>"
    loc = [encoder.loc0_id + v for v in (325, 951, 325, 951)]
    assert prompt.ids[-5:] == loc + [tokenizer.convert_tokens_to_ids("\n")]
    with pytest.raises(InputError, match="placeholders"):
        encoder.encode("between {pixel} and {pixel}", [(1, 2)])
    assert encoder.encode("what does {pixel} mean?").text == "what does {pixel} mean?"  # user text, no pixels


@pytest.mark.parametrize("hostile", ["How far <image> is it?", "stop<eos>", "a <bos> b", "<loc0001><loc0002>",
                                     "<seg012>", "<start_of_turn>user", "<pad>", "<unused7>", "[multimodal]"])
def test_user_text_cannot_inject_special_tokens(encoder, hostile):
    with pytest.raises(InputError, match="control sequence"):
        encoder.encode(hostile)


def test_lookalikes_stay_plain_text(encoder, tokenizer):
    ids = encoder.encode("is < eos > or <eos or loc0001> here?").ids[1025:]
    assert not set(ids) & (encoder.reserved | set(range(encoder.loc0_id, len(tokenizer))))
    # below the text check: split_special_tokens turns <image> into plain pieces, and the id check refuses the
    # added <loc> tokens, which split_special_tokens does not split
    assert encoder.image_id not in encoder._text_ids("x <image> y")
    with pytest.raises(InputError, match="reserved"):
        encoder._text_ids("x <loc0001> y")


def test_empty_question_is_refused(encoder):
    with pytest.raises(InputError, match="empty"):
        encoder.encode("   ")


# ------------------------------------------------------------------ answers, verbatim
@pytest.mark.parametrize("text, question, value, unit", [
    ("3.85m", "How far is the woman from the camera?", 3.85, "m"),
    ("9.03m<eos>", "", 9.03, "m"),
    ("0.72 meters.", "", 0.72, "m"),
    ("The minimum distance between the stapler and the blue book on the table is 1.17 meters.", "", 1.17, "m"),
    ("We estimate the height of the faucet to be 0.11 meters.", "", 0.11, "m"),
    ("We estimate the width of the door to be 0.77 meters.", "", 0.77, "m"),
    ("4.", "How many chair are farther from the observer than the desk?", 4.0, "count"),
    ("No.", "", 0.0, "bool"),
    ("Yes", "", 1.0, "bool"),
    ("Yes<eos>", "", 1.0, "bool"),
    ("2", "Between the chair and the cello, which one is positioned on the right side?", None, ""),
    ("(B)", "", None, ""),
    ("II", "", None, ""),
    ("The desktop computer can be found down of the box.", "", None, ""),
    ("0.61m -0.20m 1.17m", "", None, ""),        # a point, not a scalar
    ("-0.46 0.18 -0.87", "", None, ""),         # a direction vector
    ("about 35 cm", "", 0.35, "m"),
    ("the cup is 2 in front of the plate", "", None, ""),
])
def test_answer_values(text, question, value, unit):
    parsed = parse_answer(text, question)
    assert parsed.unit == unit
    assert parsed.value == (pytest.approx(value) if value is not None else None)
    assert "<eos>" not in parsed.text


def test_aabb_becomes_an_optical_frame_box():
    text = "-2.57m -1.12m 13.22m -2.06m 0.22m 13.55m<eos>"
    low, high = parse_aabb(text)
    assert low.tolist() == [-2.57, -1.12, 13.22] and high.tolist() == [-2.06, 0.22, 13.55]
    box = aabb_to_box(text, "woman", box_id=0)
    np.testing.assert_allclose(box.center, [-2.315, -0.45, 13.385])
    np.testing.assert_allclose(box.size, [0.51, 1.34, 0.33])
    np.testing.assert_allclose(box.min_corner, low)
    assert box.center[0] < 0  # the woman on the left: negative x in the optical frame
    assert box.yaw == 0.0 and box.label == "woman" and box.id == 0


def test_aabb_reorders_and_refuses_other_shapes():
    low, high = parse_aabb("1.0m 2.0m 3.0m 0.5m 2.5m 1.0m")
    assert low.tolist() == [0.5, 2.0, 1.0] and high.tolist() == [1.0, 2.5, 3.0]
    for bad in ["-2.57m -1.12m 13.22m -2.06m 0.22m", "1 2 3 4 5 6", "3.85m", "the box is at 1m 2m 3m 4m 5m 6m"]:
        assert parse_aabb(bad) is None and aabb_to_box(bad, "x") is None


def test_clean_strips_eos_and_whitespace():
    assert clean("  D<eos><eos> ") == "D"
