"""The model-free tabletop backend on synthetic scenes with ground truth."""

import math

import numpy as np
import pytest

from n3d_ros.backends.base import BackendUnsupported
from n3d_ros.backends.tabletop import TabletopBackend, TabletopConfig
from n3d_ros.core.boxes import iou_3d
from n3d_ros.core.scene import make_scene
from n3d_ros.core.types import InputError, RGBDFrame
from n3d_ros.pipeline import Pipeline

SEEDS = (0, 3, 8)


@pytest.fixture(scope="module")
def backend():
    return TabletopBackend()


@pytest.fixture(scope="module")
def scenes():
    return {seed: make_scene(seed) for seed in SEEDS}


def _pair(truth, boxes):
    """Each ground-truth object with the detected box of highest IoU."""
    return [(o, max(boxes, key=lambda b: iou_3d(o, b))) for o in truth]


@pytest.mark.parametrize("seed", SEEDS)
def test_finds_every_object_with_good_iou(backend, scenes, seed):
    scene = scenes[seed]
    result = backend.detect(scene.frame)
    assert result.backend == "tabletop"
    assert len(result.boxes) == len(scene.objects)
    pairs = _pair(scene.objects, result.boxes)
    assert len({id(b) for _, b in pairs}) == len(pairs)  # one box per object
    ious = [iou_3d(o, b) for o, b in pairs]
    assert np.mean(ious) >= 0.8 and min(ious) >= 0.6, ious
    errors = [np.linalg.norm(o.center - b.center) for o, b in pairs]
    assert max(errors) < 0.02
    for o, b in pairs:
        assert b.attributes["color"] == o.attributes["color"]
        assert b.label == f"{o.attributes['color']} object"
        assert b.attributes["category_known"] is False
        if b.attributes.get("shape"):  # it only ever claims spheres, and must be right when it does
            assert b.attributes["shape"] == "sphere" == o.attributes["shape"]


@pytest.mark.parametrize("seed", SEEDS)
def test_ids_run_left_to_right_and_carry_the_table_normal(backend, scenes, seed):
    scene = scenes[seed]
    boxes = backend.detect(scene.frame).boxes
    assert [b.id for b in boxes] == list(range(len(boxes)))
    us = [b.attributes["pixel_box"][0] + b.attributes["pixel_box"][2] / 2 for b in boxes]
    assert all(a <= b + 20 for a, b in zip(us, us[1:]))  # image order (centroids; box centres roughly)
    for box in boxes:
        up = np.array(box.attributes["support_up"])
        assert math.degrees(math.acos(min(1.0, abs(up @ scene.table_normal)))) < 1.0
        assert up @ scene.table_normal > 0  # pointing up, like the scene's


def test_spheres_are_recognised_by_their_shape(backend, scenes):
    truth_spheres = detected = 0
    for scene in scenes.values():
        for o, b in _pair(scene.objects, backend.detect(scene.frame).boxes):
            truth_spheres += o.attributes["shape"] == "sphere"
            detected += b.attributes.get("shape") == "sphere"
    assert truth_spheres > 0 and detected == truth_spheres


def test_ground_filters_by_phrase(backend, scenes):
    scene = scenes[0]
    color = scene.objects[0].attributes["color"]
    result = backend.ground(scene.frame, [f"the {color} mug"])
    assert [b.attributes["color"] for b in result.boxes] == [color]
    assert any("cannot check mug" in n for n in result.notes)
    assert backend.ground(scene.frame, ["the magenta thing"]).boxes == []
    both = backend.ground(scene.frame, ["object 0", "object 1"])
    assert [b.id for b in both.boxes] == [0, 1]


def test_ground_question_gives_the_whole_scene_when_the_question_needs_it(backend, scenes):
    scene = scenes[3]
    everything = len(scene.objects)
    assert len(backend.ground_question(scene.frame, "How many objects are there?").boxes) == everything
    assert len(backend.ground_question(scene.frame, "Which object is the largest?").boxes) == everything
    color = scene.objects[1].attributes["color"]
    assert len(backend.ground_question(scene.frame, f"Where is the {color} object?").boxes) == 1


def test_freeform_questions_are_refused_with_a_reason(backend, scenes):
    scene = scenes[0]
    with pytest.raises(BackendUnsupported, match="no language model"):
        backend.answer_freeform(scene.frame, "What is the mug made of?", backend.detect(scene.frame))


def test_no_table_in_view_gives_no_boxes_and_says_why(backend, scenes):
    frame = scenes[0].frame
    empty = RGBDFrame(color=frame.color, depth=np.full_like(frame.depth, np.nan), camera=frame.camera)
    result = backend.detect(empty)
    assert result.boxes == [] and any("no support plane" in n for n in result.notes)


def test_config_is_validated():
    with pytest.raises(InputError, match="unknown tabletop settings"):
        TabletopBackend(max_rang_m=2.0)
    with pytest.raises(InputError):
        TabletopBackend(min_range_m=2.0, max_range_m=1.0)
    assert TabletopBackend(TabletopConfig(max_range_m=2.0), min_range_m=0.3).config == TabletopConfig(0.3, 2.0)


def test_pipeline_answers_from_tabletop_boxes(scenes):
    """End to end through the team's pipeline: the geometry path answers within 2 cm of ground truth."""
    scene = scenes[8]
    a, b = scene.objects[0], scene.objects[-1]
    pipeline = Pipeline(TabletopBackend())
    question = f"How far is the {a.attributes['color']} object from the {b.attributes['color']} object?"
    answer = pipeline.ask(scene.frame, question)
    assert answer.success and answer.path == "geometry"
    assert answer.value == pytest.approx(np.linalg.norm(a.center - b.center), abs=0.02)
    mug = pipeline.ask(scene.frame, f"Where is the {a.attributes['color']} mug?")
    assert mug.success and "'mug'" in mug.text  # answered by colour, and says it could not check "mug"
    count = pipeline.ask(scene.frame, "How many objects are there?")
    assert count.value == len(scene.objects)
    refused = pipeline.ask(scene.frame, "What is the mug made of?")
    assert not refused.success and refused.path == "none"
