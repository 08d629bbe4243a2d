"""Bins -> metric boxes and the turn-2 text, against the spec's appendix vectors (demo2, demo3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from n3d_ros.core.pointmap import N3DInputs
from n3d_ros.engine.protocol.box_parser import RawBox, parse_boxes
from n3d_ros.engine.protocol.decoding import decode_box, decode_boxes, scene_box
from n3d_ros.engine.model import N3DEngine, load_engine
from n3d_ros.engine.protocol.prompts import scene_condition
from n3d_ros.engine.tiny import cached_tiny_checkpoint

DEMO2 = dict(shift0=(-1.0546875, -0.6118164, 1.0585938), scaling=0.4649231, intr=(1.2240, 1.8346, 0.5, 0.5))
DEMO3 = dict(shift0=(-1.4306641, -1.0810547, 2.5917969), scaling=0.3211534, intr=(2.4436, 1.8327, 0.5, 0.5))
DEMO2_TEXT = "bbox_0=Bbox(person,519,587,394,500,278,254,199)\nbbox_1=Bbox(orange/tangerine,720,858,73,500,161,53,84)"
DEMO2_Q = "Is person positioned behind orange/tangerine as seen from the side opposite the photographer?"
DEMO2_TURN2 = ("Is person positioned behind orange/tangerine as seen from the side opposite the photographer? "
               "The 3D bbox of person is [-0.04, -0.13, 2.75, 0.37, 0.34, 0.27]. The 3D bbox of orange/tangerine is "
               "[-0.25, -0.27, 1.37, 0.22, 0.07, 0.11]. The 2D bbox of person is [0.52, 0.59, 0.17, 0.24]. The 2D bbox "
               "of orange/tangerine is [0.72, 0.86, 0.21, 0.12]. ")


def test_demo3_decodes_to_the_released_numbers():
    raw = parse_boxes("bbox_0=Bbox(person,275,483,61,500,316,468,390)").boxes[0]
    box = decode_box(raw, DEMO3["shift0"], DEMO3["scaling"], DEMO3["intr"])
    # reference written differently: metres per Z bin = 2 / 1000 / scaling, per size bin = 0.625 / 1000 / scaling
    z = DEMO3["shift0"][2] + 61 * (0.002 / DEMO3["scaling"])
    assert math.isclose(z, 2.9717, abs_tol=1e-4) and math.isclose(box.center[2], z, rel_tol=1e-12)
    np.testing.assert_allclose(box.size, [0.6150, 0.9108, 0.7590], atol=1e-4)
    # optical frame: x right / y down is the negated N3D (x left / y up) centre (0.27, 0.03)
    x_left = -(0.275 - 0.5) / 2.4436 * z
    np.testing.assert_allclose(box.center[:2], [-x_left, -(-(0.483 - 0.5) / 1.8327 * z)], atol=1e-9)
    np.testing.assert_allclose(np.round(-box.center[:2], 2), [0.27, 0.03])
    assert box.yaw == 0.0 and box.id == 0 and box.label == "person"
    assert box.attributes["bins"] == [275, 483, 61, 500, 316, 468, 390]
    text = scene_condition([scene_box(box, "person", DEMO3["intr"])])
    assert text == (" The 3D bbox of person is [0.27, 0.03, 2.97, 0.61, 0.91, 0.76]. "
                    "The 2D bbox of person is [0.28, 0.48, 0.58, 0.64]. ")


def test_yaw_and_ids_survive():
    box = decode_box(RawBox(7, "cup", (500, 500, 100, 750, 10, 10, 10)), (0, 0, 1.0), 1.0, (1, 1, 0.5, 0.5))
    assert box.id == 7
    assert math.isclose(box.yaw, -math.pi, abs_tol=1e-12)  # +pi about +y_N3D is -pi about +y_optical
    np.testing.assert_allclose(box.center, [0.0, 0.0, 1.2])
    boxes = decode_boxes(parse_boxes("junk\nbbox_3=Bbox(a,1,2,3,500,5,6,7)").boxes, (0, 0, 1.0), 1.0, (1, 1, .5, .5))
    assert [b.id for b in boxes] == [3] and "saturated" not in boxes[0].attributes
    far = decode_box(RawBox(0, "wall", (500, 500, 999, 500, 999, 10, 10)), (0, 0, 1.0), 0.5, (1, 1, 0.5, 0.5))
    assert far.attributes["saturated"] == ["z", "sx"]
    assert np.isclose(far.center[2], 1.0 + 0.999 * 2.0 / 0.5)  # shift0_z + 2 / scaling: the deepest box possible


class ScriptedEngine(N3DEngine):
    """The real flow with the model's text fixed to the released outputs (generate_tokens is the override point)."""

    script: list = []

    def generate_tokens(self, turn):
        return self.tokenizer.encode(self.script.pop(0), add_special_tokens=False)


@pytest.fixture(scope="module")
def scripted():
    base = load_engine(str(cached_tiny_checkpoint()), device="cpu", max_new_tokens=64)
    engine = ScriptedEngine(base.model, base.tokenizer, base.image_processor, max_new_tokens=64)
    base.hook.remove()
    yield engine
    engine.close()


def demo2_inputs():
    h, w = 426, 640
    points = np.ones((h * w, 4), np.float32)
    return N3DInputs(image=Image.new("RGB", (w, h)), points=points, map_hw=(h, w), shift0=np.array(DEMO2["shift0"]),
                     scaling=DEMO2["scaling"], intrinsics_n=DEMO2["intr"], source_hw=(683, 1024), valid_fraction=1.0)


def test_demo2_two_turn_flow_reproduces_the_released_turn2_text(scripted):
    scripted.script = [DEMO2_TEXT, "<think> z of person 2.75 > 1.37 ... inverted. </think> That is False."]
    result = scripted.ask(demo2_inputs(), DEMO2_Q)
    assert [b.label for b in result.grounding.boxes] == ["person", "orange/tangerine"]
    assert result.grounding.turn.user_text.endswith("The reference code is as followed: " + "@dataclass\nclass Bbox:"
                                                    "\n    class: str\n    position_u: int\n    position_v: int\n"
                                                    "    position_z: int\n    angle_y: int\n    scale_x: int\n"
                                                    "    scale_y: int\n    scale_z: int")
    assert result.turn2.user_text == "<image>" + DEMO2_TURN2
    assert result.answer == "That is False."
    assert result.reasoning == "z of person 2.75 > 1.37 ... inverted."
    assert {"turn1_generate", "turn2_generate", "turn1_parse", "total"} <= set(result.timings)


def test_given_question_mode_uses_only_referenced_boxes(scripted):
    scripted.script = [DEMO2_TEXT]
    inputs = demo2_inputs()
    grounding = scripted.ground(inputs, "person")
    condition = scripted.scene_condition(inputs, grounding, "Where is 1_orange relative to 0_person?")
    assert condition == ""  # the greedy capture "1_orange relative to 0" swallows both references (spec 7.12)
    condition = scripted.scene_condition(inputs, grounding, "How tall is 0_person?")
    assert condition.startswith(" The 3D bbox of 0_person is [-0.04, -0.13, 2.75, 0.37, 0.34, 0.27].")
