"""The question parser: many phrasings map to the right operation and phrases; others must go to the model."""

import pytest

from n3d_ros.reasoning.questions import extract_object_phrases, parse_question

MAPPED = [
    # (question, op, phrases, extra fields that must hold)
    ("How far is the red box from the blue cylinder?", "distance", ["red box", "blue cylinder"], {}),
    ("What is the distance between the red box and the green sphere?", "distance", ["red box", "green sphere"], {}),
    ("distance from the mug to the laptop in meters", "distance", ["mug", "laptop"], {}),
    ("How far apart are the mug and the laptop?", "distance", ["mug", "laptop"], {}),
    ("Can you tell me how far the mug is from the laptop", None, None, {}),  # embedded order: not mapped
    ("how far away is the red box?", "distance", ["red box"], {}),
    ("How far is the mug from the camera?", "distance", ["mug"], {}),
    ("What is the gap between the red box and the blue cylinder?", "distance_surface", ["red box", "blue cylinder"], {}),
    ("What is the surface distance between the mug and the laptop?", "distance_surface", ["mug", "laptop"], {}),
    ("how much free space between the mug and the bowl", None, None, {}),
    ("What is the clearance between the mug and the bowl?", "distance_surface", ["mug", "bowl"], {}),
    ("How tall is the red box?", "height", ["red box"], {}),
    ("What is the height of person?", "height", ["person"], {}),
    ("Please tell me how wide the red box is", "width", ["red box"], {}),
    ("how deep is the drawer", "depth", ["drawer"], {}),
    ("How big is the green sphere?", "size", ["green sphere"], {}),
    ("What are the dimensions of the laptop?", "size", ["laptop"], {}),
    ("Is the red box to the left of the blue cylinder?", "relation", ["red box", "blue cylinder"],
     {"relation": "left", "form": "yesno", "viewpoint": "camera"}),
    ("Is the mug on the right side of the laptop?", "relation", ["mug", "laptop"], {"relation": "right"}),
    ("Is the lamp above the table?", "relation", ["lamp", "table"], {"relation": "above"}),
    ("is the ball under the chair", "relation", ["ball", "chair"], {"relation": "below"}),
    ("Is the cup in front of the bowl?", "relation", ["cup", "bowl"], {"relation": "front"}),
    ("Is the cup closer to the camera than the bowl?", "relation", ["cup", "bowl"], {"relation": "front"}),
    ("Is the cup farther away than the bowl?", "relation", ["cup", "bowl"], {"relation": "behind"}),
    ("Is person positioned behind orange/tangerine as seen from the side opposite the photographer?", "relation",
     ["person", "orange/tangerine"], {"relation": "behind", "viewpoint": "opposite"}),
    ("Is the mug left of the laptop when seen from the other side?", "relation", ["mug", "laptop"],
     {"relation": "left", "viewpoint": "opposite"}),
    ("Is the red box bigger than the green sphere?", "relation", ["red box", "green sphere"], {"relation": "larger"}),
    ("Is the vase taller than the cup?", "relation", ["vase", "cup"], {"relation": "taller"}),
    ("What is to the left of the blue cylinder?", "relation", ["blue cylinder"],
     {"relation": "left", "form": "list", "reference": "blue cylinder"}),
    ("Which objects are behind the mug?", "relation", ["mug"], {"relation": "behind", "form": "list"}),
    ("Which is closer, the red box or the green sphere?", "extreme", ["red box", "green sphere"],
     {"extreme": "nearest", "form": "which"}),
    ("Which one is bigger, the mug or the bowl?", "extreme", ["mug", "bowl"], {"extreme": "largest"}),
    ("Which is more to the left, the mug or the bowl?", "extreme", ["mug", "bowl"], {"extreme": "leftmost"}),
    ("Which object is closest to the camera?", "extreme", [], {"extreme": "nearest", "among": None}),
    ("What is the farthest object?", "extreme", [], {"extreme": "farthest"}),
    ("What is the largest object?", "extreme", [], {"extreme": "largest"}),
    ("Which red object is the smallest?", "extreme", ["red object"], {"extreme": "smallest", "among": "red object"}),
    ("which is the tallest box", "extreme", ["box"], {"extreme": "tallest", "among": "box"}),
    ("Which object is nearest to the red box?", "extreme", ["red box"], {"extreme": "nearest", "reference": "red box"}),
    ("What is closest to the mug?", "extreme", ["mug"], {"extreme": "nearest", "reference": "mug"}),
    ("find the leftmost object", "extreme", [], {"extreme": "leftmost"}),
    ("How many red objects are there?", "count", ["red objects"], {"among": "red objects"}),
    ("How many objects do you see?", "count", [], {"among": None}),
    ("how many boxes are on the table", "count", ["boxes"], {}),
    ("Count the spheres.", "count", ["spheres"], {}),
    ("If you are at 4_hotair ballon, where will you find 2_hotair ballon?", "direction",
     ["4_hotair ballon", "2_hotair ballon"], {}),
    ("In which direction is the mug from the laptop?", "direction", ["laptop", "mug"], {}),
    ("What is the clock direction from the mug to the laptop?", "direction", ["mug", "laptop"], {}),
    ("Where is the mug relative to the laptop?", "direction", ["laptop", "mug"], {}),
    ("Where is the red mug?", "where", ["red mug"], {}),
    ("where's the ball", "where", ["ball"], {}),
    ("Locate the blue cylinder.", "where", ["blue cylinder"], {}),
    ("What is the position of object 3?", "where", ["object 3"], {}),
    ("Where is the mug from the camera?", "where", ["mug"], {}),
    ("  WHERE   IS THE RED MUG ?? ", "where", ["red mug"], {}),
]

NOT_MAPPED = [
    "What colour is the mug?",
    "Is the mug empty?",
    "Describe the scene.",
    "What is the red object?",
    "Why is the box red?",
    "How many red objects are left of the box?",
    "Can the robot pick up the mug?",
    "What is the mug made of?",
    "Is there a cat in the kitchen and is it asleep?",
    "What is between the mug and the laptop?",
    "Which is closer, the mug or the bowl, as seen from the other side?",
    "How long will it take to reach the mug?",
    "hello",
    "",
]


@pytest.mark.parametrize("question, op, phrases, extra", MAPPED)
def test_maps_question(question, op, phrases, extra):
    parsed = parse_question(question)
    if op is None:
        assert parsed is None, parsed
        return
    assert parsed is not None, question
    assert parsed.op == op
    assert parsed.phrases == phrases
    for name, value in extra.items():
        assert getattr(parsed, name) == value, name
    assert parsed.text == question


@pytest.mark.parametrize("question", NOT_MAPPED)
def test_leaves_question_to_the_model(question):
    assert parse_question(question) is None


def test_extract_phrases_uses_the_parser_when_it_maps():
    assert extract_object_phrases("How far is the red mug from the laptop?") == ["red mug", "laptop"]


def test_extract_phrases_of_free_form_questions():
    assert extract_object_phrases("What colour is the mug?") == ["mug"]
    assert extract_object_phrases("Can the robot pick up the mug next to the laptop?") == ["robot", "mug", "laptop"]
    assert extract_object_phrases("hello") == []
