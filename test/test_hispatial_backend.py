"""HiSpatialBackend behind the Backend protocol, through the Pipeline: boxes, geometry answers, model answers."""

from __future__ import annotations

import numpy as np
import pytest

from n3d_ros.backends.hispatial import HiSpatialBackend, build_hispatial_backend, split_chain_of_thought
from n3d_ros.core.types import InputError, PinholeCamera, RGBDFrame
from n3d_ros.hispatial.loading import load_hispatial
from n3d_ros.hispatial.model import HiSpatialEngine, HiSpatialOutput
from n3d_ros.hispatial.tiny import cached_tiny_checkpoint
from n3d_ros.pipeline import Pipeline, PipelineConfig

CAM = PinholeCamera(width=320, height=240, fx=300.0, fy=300.0, cx=159.5, cy=119.5)
MUG = "-0.30m 0.05m 0.90m -0.20m 0.15m 1.00m"      # centre (-0.25, 0.10, 0.95)
LAPTOP = "0.10m 0.00m 1.10m 0.50m 0.20m 1.40m"     # centre (0.30, 0.10, 1.25)


class ScriptedEngine(HiSpatialEngine):
    """Real prompts, features and parsing; the model's answers come from ``script`` in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.script, self.questions, self.frames_encoded = [], [], 0

    def encode_frame(self, inputs):
        self.frames_encoded += 1
        return super().encode_frame(inputs)

    def generate(self, frame, prompt, max_new_tokens=None):
        self.questions.append(prompt.text)
        ids = self.tokenizer.encode(self.script.pop(0), add_special_tokens=False)  # "<eos>" -> the eos id
        return HiSpatialOutput(prompt, self.decode_text(ids), ids, {"generate": 0.0})


@pytest.fixture(scope="module")
def tiny():
    engine = load_hispatial(str(cached_tiny_checkpoint()), device="cpu", max_new_tokens=5)
    yield engine
    engine.close()


@pytest.fixture
def scripted(tiny):
    return ScriptedEngine(tiny.network, tiny.tokenizer, tiny.image_processor, max_new_tokens=5)


@pytest.fixture
def pipeline(scripted):
    return Pipeline(HiSpatialBackend(scripted), PipelineConfig(backend="hispatial"))


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(3)
    return RGBDFrame(color=rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
                     depth=np.full((240, 320), 1.2, dtype=np.float32), camera=CAM)


def test_where_is_returns_the_aabb_as_an_optical_box(pipeline, scripted, frame):
    scripted.script = [MUG + "<eos>"]
    result = pipeline.detect(frame, "the red mug")
    assert scripted.questions == ["detect the aabb of the red mug"]
    assert result.backend == "hispatial" and len(result.boxes) == 1
    box = result.boxes[0]
    np.testing.assert_allclose(box.center, [-0.25, 0.10, 0.95])
    np.testing.assert_allclose(box.size, [0.10, 0.10, 0.10], atol=1e-12)
    assert box.label == "the red mug" and box.attributes["phrase"] == "the red mug"


def test_geometry_answers_from_the_grounded_boxes(pipeline, scripted, frame):
    scripted.script = [MUG, LAPTOP]
    answer = pipeline.ask(frame, "how far is the red mug from the laptop")
    assert scripted.questions == ["detect the aabb of the red mug", "detect the aabb of the laptop"]
    assert answer.success and answer.path == "geometry" and answer.unit == "m"
    assert answer.value == pytest.approx(np.linalg.norm([0.55, 0.0, 0.30]))


def test_freeform_questions_get_the_models_answer_on_the_same_features(pipeline, scripted, frame):
    fresh = frame.__class__(color=frame.color, depth=frame.depth, camera=frame.camera)  # a new frame object
    scripted.script = [MUG, LAPTOP, "Yes<eos>"]
    question = "Would you say the red mug and the laptop are oriented similarly?"
    answer = pipeline.ask(fresh, question)
    assert scripted.questions[-1] == question  # the question itself, stripped
    assert answer.success and answer.path == "model" and answer.text == "Yes"
    assert len(answer.objects) == 2
    assert scripted.frames_encoded == 1  # point map and image features once for all three prompts
    assert pipeline.backend.answer_value(question, answer.text) == (1.0, "bool")
    assert pipeline.backend.answer_value("How far is the woman from the camera?", "3.85m") == (3.85, "m")


def test_whole_scene_questions_are_left_to_the_model(pipeline):
    from n3d_ros.reasoning.questions import parse_question

    backend = pipeline.backend
    assert backend.answers_with_model(parse_question("how many mugs are there"))
    assert backend.answers_with_model(parse_question("what is the largest object"))
    assert not backend.answers_with_model(parse_question("how far is the red mug from the laptop"))


def test_the_camera_is_not_grounded(pipeline, scripted, frame):
    scripted.script = ["-0.1m -0.1m 2.0m 0.1m 0.1m 2.2m", "D"]
    answer = pipeline.ask(frame, "Which side of the sports car is facing the camera?")
    assert scripted.questions == ["detect the aabb of the sports car",
                                  "Which side of the sports car is facing the camera?"]
    assert answer.text == "D" and answer.path == "model"


def test_unparseable_grounding_is_a_note_not_a_crash(pipeline, scripted, frame):
    scripted.script = ["3.85m"]
    result = pipeline.detect(frame, "red mug")
    assert result.boxes == [] and result.skipped_lines == 1
    assert "not six metric values" in result.notes[0]
    scripted.script = ["no box here"]
    answer = pipeline.ask(frame, "where is the red mug")
    assert not answer.success and answer.message == "I see no red mug."  # geometry path, nothing grounded


def test_detect_all_is_refused_with_a_hint(pipeline, frame):
    with pytest.raises(InputError, match="give a phrase"):
        pipeline.detect(frame)


def test_sparse_depth_is_reported(scripted):
    depth = np.full((240, 320), np.nan, dtype=np.float32)
    depth[:40, :40] = 1.0
    sparse = RGBDFrame(color=np.zeros((240, 320, 3), np.uint8), depth=depth, camera=CAM)
    scripted.script = [MUG]
    result = HiSpatialBackend(scripted).ground(sparse, ["red mug"])
    assert any("trained on dense maps" in note for note in result.notes)


def test_tiny_model_runs_the_whole_path(tiny, frame):
    pipeline = Pipeline(HiSpatialBackend(tiny), PipelineConfig(backend="hispatial"))
    answer = pipeline.ask(frame, "Would you say the red mug and the laptop are oriented similarly?")
    assert answer.path in ("model", "none")  # random weights: whatever it says, the pipeline answers
    assert answer.timings["total"] > 0


def test_build_from_pipeline_config():
    config = PipelineConfig(backend="hispatial", model=str(cached_tiny_checkpoint()), device="cpu",
                            dtype="float32", max_new_tokens=8)
    backend = build_hispatial_backend(config)
    try:
        assert backend.name == "hispatial" and backend.engine.max_new_tokens == 8
    finally:
        backend.close()
    with pytest.raises(InputError, match="quantised"):
        build_hispatial_backend(PipelineConfig(backend="hispatial", quantization="4bit"))
    with pytest.raises(InputError, match="greedily"):
        build_hispatial_backend(PipelineConfig(backend="hispatial", sampling="official"))


def test_chain_of_thought_answer_is_the_last_step():
    text = ("Step1: Plan\nCompare the width of the basket with 0.5 m.\nStep2: Facts\nobject_size_width: basket is "
            "0.70m wide\nStep3: Reasoning with facts\n0.70m > 0.5m\nStep4: Final answer\nYes, an object that is "
            "0.5 meters wide will fit completely inside the basket without sticking out.\n")
    answer, reasoning = split_chain_of_thought(text)
    assert answer == ("Yes, an object that is 0.5 meters wide will fit completely inside the basket without "
                      "sticking out.")
    assert reasoning.startswith("Step1: Plan") and reasoning.endswith("0.70m > 0.5m")
    assert split_chain_of_thought("  (B) ") == ("(B)", "")


def test_counts_go_to_the_model_and_numeric_answers_carry_value_and_unit(pipeline, scripted, frame):
    scripted.script = [MUG, "3<eos>"]
    answer = pipeline.ask(frame, "how many mugs are there?")
    assert scripted.questions[-1] == "how many mugs are there?"  # the model, not a count of grounded boxes
    assert answer.success and answer.path == "model"
    assert (answer.value, answer.unit) == (3.0, "count")


def test_the_geometry_path_still_answers_what_it_parses(pipeline, scripted, frame):
    scripted.script = [MUG, LAPTOP]
    answer = pipeline.ask(frame, "how far is the red mug from the laptop?")
    assert answer.path == "geometry" and answer.unit == "m"
    assert answer.value == pytest.approx(np.hypot(0.55, 0.30), abs=1e-6)  # centres (-0.25, 0.1, 0.95), (0.3, 0.1, 1.25)
    assert len(scripted.questions) == 2  # two groundings, no free-form turn


def test_pipeline_from_config_selects_hispatial():
    pipeline = Pipeline.from_config(PipelineConfig(backend="hispatial", model=str(cached_tiny_checkpoint()),
                                                   device="cpu", dtype="float32", max_new_tokens=4))
    try:
        assert isinstance(pipeline.backend, HiSpatialBackend)
    finally:
        pipeline.close()
