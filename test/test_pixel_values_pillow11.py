"""What the model sees does not depend on the Pillow version (issue 11 item 9).

test/fixtures/pixel_values_pillow11.json holds the official image path's output (Pillow 11.2.1, transformers
4.52.4 slow processor, spec 1.1) on seeded synthetic frames, written once by ci/make_pixel_fixture.py in a
scratch environment. Our path (core.pointmap's LANCZOS to 640, engine.encode_image's BICUBIC to multiples
of 28, both horizontal pass first via core.resize) must reproduce it bit for bit under whatever Pillow is
installed: on Pillow 13 the stock resizes give different pixels for 640x480, 640x426 and 640x400.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from n3d_ros.core.pointmap import build_point_map
from n3d_ros.core.resize import resize_horizontal_first, smart_resize_size
from n3d_ros.core.types import InputError, PinholeCamera, RGBDFrame

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / "test" / "fixtures" / "pixel_values_pillow11.json").read_text())


def _generator():
    """ci/make_pixel_fixture.py as a module: the same seeded frames and the same summary as the fixture."""
    spec = importlib.util.spec_from_file_location("make_pixel_fixture", ROOT / "ci" / "make_pixel_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.fixture(scope="module")
def engine():
    from n3d_ros.engine.model import load_engine
    from n3d_ros.engine.tiny import cached_tiny_checkpoint

    eng = load_engine(str(cached_tiny_checkpoint()), device="cpu", dtype="float32", max_new_tokens=4)
    yield eng
    eng.close()


def _frame(width, height, seed) -> RGBDFrame:
    """The fixture's colour image on a flat wall 1 m away: the depth only has to be valid."""
    camera = PinholeCamera(width, height, fx=0.9 * width, fy=0.9 * width, cx=(width - 1) / 2, cy=(height - 1) / 2)
    return RGBDFrame(color=GEN.synthetic_frame(width, height, seed), depth=np.ones((height, width), np.float32),
                     camera=camera)


def test_fixture_is_the_official_environment_and_our_processor_has_its_settings(engine):
    assert FIXTURE["environment"]["pillow"] == "11.2.1" and FIXTURE["environment"]["transformers"] == "4.52.4"
    config, processor = FIXTURE["processor_config"], engine.image_processor
    assert (processor.size["shortest_edge"], processor.size["longest_edge"]) == (config["min_pixels"],
                                                                                config["max_pixels"])
    for key in ("patch_size", "temporal_patch_size", "merge_size", "resample", "rescale_factor", "do_rescale",
                "do_normalize"):
        assert getattr(processor, key) == config[key], key
    assert list(processor.image_mean) == config["image_mean"] and list(processor.image_std) == config["image_std"]


@pytest.mark.parametrize("case", FIXTURE["frames"], ids=lambda c: f"{c['width']}x{c['height']}")
def test_our_image_path_reproduces_pillow11_pixel_values(engine, case):
    inputs = build_point_map(_frame(case["width"], case["height"], case["seed"]))
    assert list(inputs.image.size) == case["image_640"]["size"]
    assert GEN.sha256(np.asarray(inputs.image)) == case["image_640"]["sha256"], "LANCZOS step to 640 differs"
    size = engine.processor_size(*inputs.image.size)
    assert list(size) == case["processor_image"]["size"]
    resized = resize_horizontal_first(inputs.image, size, Image.Resampling.BICUBIC)
    assert GEN.sha256(np.asarray(resized)) == case["processor_image"]["sha256"], "BICUBIC step to 28k differs"
    vision = engine.encode_image(inputs)
    assert [int(v) for v in vision.image_grid_thw[0]] == case["grid_thw"]
    got = GEN.summarise(vision.pixel_values.numpy())
    expected = case["pixel_values"]
    assert got["shape"] == expected["shape"]
    np.testing.assert_array_equal(np.array(got["samples"]), np.array(expected["samples"]))
    assert got["sha256"] == expected["sha256"]


@pytest.mark.parametrize("case", FIXTURE["resizes"], ids=lambda c: f"{c['source']}->{c['target']}-{c['filter']}")
def test_resize_horizontal_first_is_pillow11_resize(case):
    image = Image.fromarray(GEN.synthetic_frame(*case["source"], case["seed"]))
    got = resize_horizontal_first(image, tuple(case["target"]), getattr(Image.Resampling, case["filter"]))
    assert got.size == tuple(case["target"]) and got.mode == "RGB"
    assert GEN.sha256(np.asarray(got)) == case["sha256"]


def test_resize_horizontal_first_edge_cases():
    image = Image.fromarray(GEN.synthetic_frame(30, 20, 0))
    same = resize_horizontal_first(image, (30, 20), Image.Resampling.BICUBIC)
    assert same is not image and np.array_equal(np.asarray(same), np.asarray(image))
    # one axis only: exactly Pillow's single pass
    for size in ((30, 11), (17, 20)):
        assert np.array_equal(np.asarray(resize_horizontal_first(image, size, Image.Resampling.LANCZOS)),
                              np.asarray(image.resize(size, Image.Resampling.LANCZOS)))
    gray = resize_horizontal_first(image.convert("L"), (12, 9), Image.Resampling.BICUBIC)
    assert gray.mode == "L" and gray.size == (12, 9)
    with pytest.raises(ValueError, match="mode 'RGBA': convert to RGB first"):
        resize_horizontal_first(image.convert("RGBA"), (12, 9), Image.Resampling.BICUBIC)
    with pytest.raises(ValueError, match="must be positive, got 0x9"):
        resize_horizontal_first(image, (0, 9), Image.Resampling.BICUBIC)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4000), st.integers(1, 4000),
       st.sampled_from([(3136, 12845056), (3136, 1003520), (200704, 401408), (56 * 56, 28 * 28 * 64)]))
def test_smart_resize_size_is_the_processors_rule(width, height, limits):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    min_pixels, max_pixels = limits
    if max(width, height) / min(width, height) > 200:
        with pytest.raises(InputError, match="aspect ratio"):
            smart_resize_size(width, height, 28, min_pixels, max_pixels)
        return
    h_bar, w_bar = smart_resize(height, width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
    assert smart_resize_size(width, height, 28, min_pixels, max_pixels) == (w_bar, h_bar)
