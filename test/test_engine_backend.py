"""N3DBackend over the tiny checkpoint: frame -> point map -> engine -> GroundingResult in the optical frame."""

from __future__ import annotations

import numpy as np
import pytest

from n3d_ros.backends.n3d import N3DBackend
from n3d_ros.core.camera import project_normalized
from n3d_ros.core.types import GroundingResult, InputError, PinholeCamera, RGBDFrame
from n3d_ros.engine.model import N3DEngine, load_engine
from n3d_ros.engine.tiny import cached_tiny_checkpoint


class ScriptedEngine(N3DEngine):
    """Real prompts, parsing and decoding; the model's text comes from ``script`` (the generate_tokens override)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.script, self.prompts = [], []

    def generate_tokens(self, turn):
        self.prompts.append(turn.prompt.user_text)
        return self.tokenizer.encode(self.script.pop(0), add_special_tokens=False)


@pytest.fixture(scope="module")
def tiny():
    engine = load_engine(str(cached_tiny_checkpoint()), device="cpu", max_new_tokens=4)
    yield engine
    engine.close()


@pytest.fixture
def scripted(tiny):
    engine = ScriptedEngine(tiny.model, tiny.tokenizer, tiny.image_processor, max_new_tokens=64)
    yield engine
    engine.hook.remove()


def frame(width=640, height=480) -> RGBDFrame:
    rng = np.random.default_rng(3)
    depth = np.full((height, width), 2.0, np.float32)
    depth[height // 3: 2 * height // 3, width // 3: width // 2] = 1.2  # a box in front of a wall
    depth[:10, :10] = np.nan
    camera = PinholeCamera(width, height, fx=0.9 * width, fy=0.9 * width, cx=width / 2 - 0.5, cy=height / 2 - 0.5)
    return RGBDFrame(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), depth, camera)


def test_detect_runs_the_real_model(tiny):
    backend = N3DBackend(tiny)
    result = backend.detect(frame())
    assert isinstance(result, GroundingResult) and result.backend == "n3d"
    assert {"point_map", "preprocess", "turn1_generate", "turn1_parse"} <= set(result.timings)
    assert tiny.hook.applied >= 1
    # random weights write no boxes: whatever they wrote is accounted for, nothing is invented
    assert len(result.boxes) == 0 and result.raw_text == backend.last_turns["turn1"][0]


def test_boxes_come_back_in_the_optical_frame(scripted):
    backend = N3DBackend(scripted)
    f = frame()
    scripted.script = ["bbox_0=Bbox(box,350,500,200,500,100,120,50)\nbbox_1=Bbox(wall,"]
    result = backend.ground(f, ["box"])
    assert scripted.prompts[-1].startswith("<image>Identify the 3D boxes for all the 'box' in this scene.")
    (box,) = result.boxes
    assert result.skipped_lines == 1 and any("max_new_tokens" in n for n in result.notes)
    inputs, _ = backend.prepare(f, {})
    u, v = project_normalized(box.center, inputs.intrinsics_n)
    np.testing.assert_allclose([u, v], [0.35, 0.5], atol=1e-9)  # the centre projects back onto (U, V) / 1000
    assert box.center[0] < 0  # u < 0.5: left of the optical axis, x right is negative
    z = inputs.shift0[2] + 200 / 1000 * 2.0 / inputs.scaling
    assert np.isclose(box.center[2], z) and box.attributes["phrase"] == "box"


def test_several_phrases_get_unique_ids_and_answers_use_the_boxes(scripted):
    backend = N3DBackend(scripted)
    f = frame()
    scripted.script = ["bbox_0=Bbox(mug,300,500,100,500,50,50,50)", "bbox_0=Bbox(laptop,700,500,150,500,200,20,150)"]
    result = backend.ground(f, ["mug", "laptop"])
    assert [(b.id, b.label, b.attributes["model_id"]) for b in result.boxes] == [(0, "mug", 0), (1, "laptop", 0)]
    scripted.script = ["<think> compare x </think> The mug is left of the laptop."]
    answer, reasoning = backend.answer_freeform(f, "Is the mug left of the laptop? Answer.", result)
    assert (answer, reasoning) == ("The mug is left of the laptop.", "compare x")
    turn2 = scripted.prompts[-1]
    assert turn2.startswith("<image>Is the mug left of the laptop? The 3D bbox of mug is [")
    assert "The 2D bbox of laptop is [0.7, 0.5, " in turn2


def test_question_flow_and_bad_input(scripted):
    backend = N3DBackend(scripted)
    scripted.script = ["bbox_0=Bbox(mug,500,500,100,500,50,50,50)"]
    result = backend.ground_question(frame(), "Where is the mug?")
    assert scripted.prompts[-1].startswith("<image>Where is the mug? First locate the bbox of the aforementioned")
    assert [b.label for b in result.boxes] == ["mug"]
    with pytest.raises(InputError):
        backend.ground(frame(), ["  "])
    with pytest.raises(InputError):
        backend.ground_question(frame(), "Where is <image> the mug?")
