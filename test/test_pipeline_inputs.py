"""Issue 12, core side: unusable frames and model output are refused with the reason, never "I see no ...".

Depth without readings in range, implausible intrinsics, frames too small or elongated for the backend,
degenerate model boxes, and class names with parentheses; tabletop backend and the n3d backend (tiny random
model, or scripted model text through the real parser and decoder).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from n3d_ros.backends.n3d import N3DBackend
from n3d_ros.core import depth_check
from n3d_ros.core.depth_check import MIN_VALID_FRACTION, read_depth_payload
from n3d_ros.core.frame_size import MAX_ASPECT_RATIO, min_short_side, n3d_size_problem
from n3d_ros.core.images import decode_depth
from n3d_ros.core.pointmap import target_size
from n3d_ros.core.types import Box3D, GroundingResult, InputError, PinholeCamera, RGBDFrame
from n3d_ros.pipeline import Pipeline, PipelineConfig
from test_engine_backend import ScriptedEngine, tiny  # noqa: F401  (a fixture)
from test_pipeline import scene, tabletop  # noqa: F401  (fixtures: seeded scene, tabletop pipeline)

RANGE = "range 0.1-10 m"


@pytest.fixture
def scripted_pipeline(tiny):  # noqa: F811
    engine = ScriptedEngine(tiny.model, tiny.tokenizer, tiny.image_processor, max_new_tokens=64)
    yield Pipeline(N3DBackend(engine), PipelineConfig(backend="n3d"))
    engine.hook.remove()


def with_depth(frame: RGBDFrame, depth, readout=None) -> RGBDFrame:
    return RGBDFrame(color=frame.color, depth=np.asarray(depth, dtype=np.float32), camera=frame.camera,
                     depth_readout=readout)


def as_decoded(frame: RGBDFrame, payload: np.ndarray, encoding: str, is_bigendian=False) -> RGBDFrame:
    """The frame as the node/CLI decoders deliver it: range applied (out-of-range -> NaN), readout kept."""
    height, width = payload.shape
    data = payload.tobytes()
    metres = decode_depth(data, encoding, width, height, is_bigendian=is_bigendian, min_range_m=0.1,
                          max_range_m=10.0)
    return with_depth(frame, metres, read_depth_payload(data, encoding, width, height, is_bigendian=is_bigendian))


# ---------------------------------------------------------------- 6: depth with no valid readings in range
@pytest.mark.parametrize("name, make, seen", [
    ("all NaN", lambda d: np.full_like(d, np.nan), "all NaN"),
    ("all inf", lambda d: np.full_like(d, np.inf), "all +-inf"),
    ("negative", lambda d: -np.nan_to_num(d, nan=1.0), "all negative"),
    ("1e30", lambda d: np.full_like(d, 1e30), "no depth camera reads that far"),
    ("millimetres as metres", lambda d: d * 1000.0, "looks like millimetres in a 32FC1 image"),
    ("all zero", lambda d: np.zeros_like(d), "all 0"),
])
def test_metric_depth_without_readings_in_range_says_what_it_held(tabletop, scene, name, make, seen):
    frame = with_depth(scene.frame, make(scene.frame.depth))
    answer = tabletop.ask(frame, "how tall is the red sphere?")
    assert not answer.success and answer.path == "none" and answer.text == ""
    assert f"no valid readings in {RANGE}" in answer.message and seen in answer.message, answer.message
    assert "I see no" not in answer.message
    with pytest.raises(InputError, match="no valid readings"):
        tabletop.detect(frame)  # the detection path (the node's timer) refuses with the same reason


def test_millimetres_in_32fc1_report_the_median(tabletop, scene):
    frame = with_depth(scene.frame, scene.frame.depth * 1000.0)
    message = tabletop.ask(frame, "where is the red sphere?").message
    median = float(np.nanmedian(scene.frame.depth * 1000.0))
    assert f"their median {median:g} m" in message, message


@pytest.mark.parametrize("name, payload, encoding, bigendian, seen", [
    ("32FC1 all NaN", lambda mm: np.full(mm.shape, np.nan, "<f4"), "32FC1", False, "all NaN"),
    ("32FC1 all inf", lambda mm: np.full(mm.shape, np.inf, "<f4"), "32FC1", False, "all +-inf"),
    ("32FC1 negative", lambda mm: -(mm / 1000.0).astype("<f4"), "32FC1", False, "% negative"),
    ("32FC1 1e30", lambda mm: np.full(mm.shape, 1e30, "<f4"), "32FC1", False, "median 1e+30 m"),
    ("32FC1 millimetres", lambda mm: mm.astype("<f4"), "32FC1", False, "looks like millimetres in a 32FC1"),
    ("32FC1 wrong byte order", lambda mm: (mm / 1000.0).astype("<f4"), "32FC1", True, "byte order is wrong"),
    ("16UC1 all 0", lambda mm: np.zeros(mm.shape, "<u2"), "16UC1", False, "all 0 (16UC1 0 means no reading"),
    ("16UC1 all 65535", lambda mm: np.full(mm.shape, 65535, "<u2"), "16UC1", False, "all 65535"),
    ("16UC1 wrong byte order", lambda mm: mm.astype("<u2"), "16UC1", True, "byte order is wrong"),
    ("16UC1 metres", lambda mm: np.round(mm / 1000.0).astype("<u2"), "16UC1", False, "looks like metres in a 16UC1"),
])
def test_decoded_depth_keeps_what_the_sensor_sent(tabletop, scene, name, payload, encoding, bigendian, seen):
    millimetres = np.nan_to_num(scene.frame.depth * 1000.0, nan=0.0).round()
    frame = as_decoded(scene.frame, payload(millimetres), encoding, bigendian)
    answer = tabletop.ask(frame, "how tall is the red sphere?")
    assert not answer.success and answer.path == "none" and "I see no" not in answer.message
    assert seen in answer.message, answer.message
    if "byte order" in seen:
        assert "fix the publisher's is_bigendian flag" in answer.message
    else:
        assert f"valid readings in {RANGE}" in answer.message


def test_a_correct_byte_order_is_not_suspected(scene):
    millimetres = np.nan_to_num(scene.frame.depth * 1000.0, nan=0.0).round()
    for payload, encoding in ((millimetres.astype("<u2"), "16UC1"), ((millimetres / 1000).astype("<f4"), "32FC1"),
                              (np.full(millimetres.shape, 1500, "<u2"), "16UC1")):
        height, width = payload.shape
        readout = read_depth_payload(payload.tobytes(), encoding, width, height)
        assert not readout.swapped_is_smoother, encoding


def test_a_frame_from_a_range_limiting_decoder_without_readout_still_says_all_nan(tabletop, scene):
    frame = with_depth(scene.frame, np.full_like(scene.frame.depth, np.nan))
    message = tabletop.ask(frame, "where is the red sphere?").message
    assert "all NaN" in message and "turns out-of-range readings into NaN" in message


def test_too_few_readings_refuse_and_enough_pass(tabletop, scene):
    depth = np.full_like(scene.frame.depth, np.nan)
    flat = depth.reshape(-1)
    needed = math.ceil(MIN_VALID_FRACTION * flat.size)
    flat[:needed - 1] = 1.0
    answer = tabletop.ask(with_depth(scene.frame, depth), "where is the red sphere?")
    assert not answer.success and f"only {needed - 1} (" in answer.message, answer.message
    flat[needed - 1] = 1.0
    assert depth_check.depth_problem(depth, 0.1, 10.0) is None  # exactly the threshold is enough


def test_the_check_runs_once_per_frame_and_a_good_frame_is_answered(tabletop, scene, monkeypatch):
    frame = with_depth(scene.frame, scene.frame.depth)
    calls = []
    real = depth_check.depth_problem
    monkeypatch.setattr(depth_check, "depth_problem", lambda *a: calls.append(1) or real(*a))
    a, b = scene.objects[0], scene.objects[1]
    first = tabletop.ask(frame, f"how far is the {a.label} from the {b.label}?")
    tabletop.ask(frame, f"where is the {a.label}?")
    tabletop.detect(frame)
    assert calls == [1] and len(frame.checks) == 1
    assert first.success, first  # a usable frame is answered as before


def test_n3d_refuses_bad_depth_before_the_model_runs(scripted_pipeline, scene):
    engine = scripted_pipeline.backend.engine
    frame = with_depth(scene.frame, np.full_like(scene.frame.depth, np.nan))
    answer = scripted_pipeline.ask(frame, "how tall is the red sphere?")
    assert not answer.success and f"no valid readings in {RANGE}" in answer.message and "all NaN" in answer.message
    assert engine.prompts == []  # no turn ran


# ---------------------------------------------------------------- 6: implausible intrinsics
@pytest.mark.parametrize("fx, fy, why", [
    (1e-3, 1e-3, "field of view"), (1e7, 1e7, "field of view"), (615.0, 1e9, "fy = 1e+09"),
    (float("nan"), 615.0, "fx = nan must be a positive focal length"),
])
def test_absurd_focal_lengths_are_refused_stating_the_rule(tabletop, scene, fx, fy, why):
    frame = RGBDFrame(color=scene.frame.color, depth=scene.frame.depth,
                      camera=replace(scene.frame.camera, fx=fx, fy=fy))
    answer = tabletop.ask(frame, "how tall is the red sphere?")
    assert not answer.success and "camera intrinsics are implausible" in answer.message and why in answer.message
    if "field of view" in why:
        assert "2*atan(size/(2*fx))" in answer.message and "3-170 deg" in answer.message


def test_real_cameras_pass_the_intrinsics_rule():
    for width, height, f in ((640, 480, 615.0), (1280, 720, 640.0), (848, 480, 285.0), (640, 480, 5000.0)):
        assert depth_check.intrinsics_problem(PinholeCamera(width, height, f, f, width / 2, height / 2)) is None


# ---------------------------------------------------------------- 7: sizes and aspect ratios
def tiny_frame(width, height, focal=None) -> RGBDFrame:
    focal = focal or 0.9 * max(width, height)
    camera = PinholeCamera(width, height, focal, focal, (width - 1) / 2, (height - 1) / 2)
    rng = np.random.default_rng(0)
    return RGBDFrame(rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
                     np.full((height, width), 1.5, np.float32), camera)


@pytest.mark.parametrize("width, height, why", [
    (320, 1, "640x2, and the model's image processor refuses aspect ratios above 200"),
    (1, 240, "2x640, and the model's image processor refuses aspect ratios above 200"),
    (1280, 28, "640x14, whose short side rounds to no 28-px patch row"),
    (20, 20, "too small for the n3d backend"),
])
def test_n3d_refuses_extreme_sizes_up_front(scripted_pipeline, width, height, why):
    answer = scripted_pipeline.ask(tiny_frame(width, height), "how tall is the mug?")
    assert not answer.success and answer.path == "none" and why in answer.message, answer.message
    assert "internal error" not in answer.message and scripted_pipeline.backend.engine.prompts == []


def test_n3d_runs_at_the_smallest_sizes_the_rule_allows(tiny):  # noqa: F811
    pipeline = Pipeline(N3DBackend(tiny), PipelineConfig(backend="n3d"))
    for width, height in ((1280, 30), (28, 112)):  # the shortest 640-px image, the fewest pixels
        result = pipeline.detect(tiny_frame(width, height, focal=300.0 if width > 1000 else None))
        assert result.backend == "n3d"  # the real processor and model took it


def test_the_size_rule_is_the_image_processors_own():
    """Our limits against transformers' smart_resize on the 640-px image it would receive."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    need = min_short_side()
    assert need == 15  # round(14 / 28) == 0: a 14-px side has no patch row
    for short in range(3, 40):
        height, width = short, 640
        refused_for_aspect = 640 / short > MAX_ASPECT_RATIO
        if refused_for_aspect:
            with pytest.raises(ValueError, match="aspect ratio"):
                smart_resize(height, width)
            continue
        h_bar, w_bar = smart_resize(height, width)
        upscaled = (h_bar, w_bar) != (round(height / 28) * 28, round(width / 28) * 28)
        assert upscaled == (short < need), short  # below the minimum the processor invents pixels
    # and the full rule on frames: exactly the ones whose 640-px image is too short are refused for it
    for width in (1280, 2000, 4000, 9000):
        for height in (28, 29, 30, 45, 60):
            resized = min(target_size(width, height))
            problem = n3d_size_problem(width, height)
            assert (problem is not None) == (resized < need), (width, height, problem)


def test_tabletop_has_its_own_minimum(tabletop):
    answer = tabletop.ask(tiny_frame(320, 1, focal=19.0), "how tall is the red box?")
    assert not answer.success and "too small for the tabletop backend" in answer.message


# ---------------------------------------------------------------- 9: degenerate boxes
@pytest.mark.parametrize("line, why", [
    ("bbox_0=Bbox(red sphere,500,500,100,500,0,0,0)", "size bins SX, SY, SZ are 0"),
    ("bbox_0=Bbox(red sphere,500,500,100,500,40,0,40)", "size bins SY are 0"),
    ("bbox_0=Bbox(red sphere,500,500,1500,500,40,40,40)", "Z=1500 lie outside the model's representable 0-999"),
    ("bbox_0=Bbox(red sphere,500,500,100,500,40," + "9" * 400 + ",40)", "SY=inf are not finite"),
])
def test_degenerate_model_boxes_are_dropped_and_the_answer_says_why(scripted_pipeline, scene, line, why):
    engine = scripted_pipeline.backend.engine
    engine.script = [line]
    answer = scripted_pipeline.ask(scene.frame, "how tall is the red sphere?")
    assert not answer.success and "0.00 m" not in answer.text and answer.objects == []
    assert "dropped as unusable" in answer.message and why in answer.message, answer.message
    engine.script = [line + "\nbbox_1=Bbox(mug,300,500,100,500,40,50,40)"]
    result = scripted_pipeline.detect(scene.frame)
    assert [b.label for b in result.boxes] == ["mug"]  # the good box survives, the bad one is not published
    assert len(result.dropped) == 1 and why in result.dropped[0] and result.to_dict()["dropped"]


class FixedBoxes:
    """A backend that returns given boxes, to show the pipeline's own net catches any backend's."""

    name, cancelled = "fake", None

    def __init__(self, boxes):
        self.boxes = boxes

    def ground_question(self, frame, question):
        return GroundingResult(boxes=list(self.boxes), backend=self.name)

    def close(self):
        pass


@pytest.mark.parametrize("size, center, why", [
    ((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), "zero size"),
    ((0.1, np.inf, 0.1), (0.0, 0.0, 1.0), "non-finite"),
    ((0.1, 0.1, 0.1), (0.0, 0.0, 1e6), "beyond 1000 m"),
])
def test_the_pipeline_drops_degenerate_boxes_from_any_backend(scene, size, center, why):
    box = Box3D("red object", center=center, size=size, id=0, attributes={"color": "red"})
    answer = Pipeline(FixedBoxes([box])).ask(scene.frame, "how tall is the red object?")
    assert not answer.success and why in answer.message and "0.00 m tall" not in answer.text, answer.message


# ---------------------------------------------------------------- 12: class names with parentheses
def test_a_class_with_parentheses_is_kept_end_to_end(scripted_pipeline, scene):
    engine = scripted_pipeline.backend.engine
    engine.script = ["bbox_0=Bbox(mug (red),500,500,100,500,40,50,40)\nbbox_1=Bbox(cup (blue,300,500,100,500,4,5,4)"]
    result = scripted_pipeline.detect(scene.frame)
    assert [b.label for b in result.boxes] == ["mug (red)"]
    assert any("unbalanced parentheses" in note for note in result.notes), result.notes
    engine.script = ["bbox_0=Bbox(mug (red),500,500,100,500,40,50,40)"]
    answer = scripted_pipeline.ask(scene.frame, "how tall is the mug?")
    assert answer.success and answer.value > 0, answer
