"""The whole generate path on a tiny random-weight Qwen2.5-VL loaded through load_engine, like the real one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from n3d_ros.core.pointmap import N3DInputs
from n3d_ros.core.types import InputError
from n3d_ros.engine.vision.encoding import point_encoding
from n3d_ros.engine.model import ModelNotFound, N3DEngine, load_engine, split_reasoning
from n3d_ros.engine.protocol.prompts import detection_text
from n3d_ros.engine.tiny import cached_tiny_checkpoint


@pytest.fixture(scope="module")
def engine():
    eng = load_engine(str(cached_tiny_checkpoint()), device="cpu", dtype="float32", max_new_tokens=6)
    yield eng
    eng.close()


def make_inputs(h=480, w=640, seed=0) -> N3DInputs:
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:h, 0:w]
    xyz = np.stack([1 - cols / w, 1 - rows / h, 0.5 + 0.2 * np.cos(rows / 50.0)], -1).reshape(-1, 3)
    valid = (rng.uniform(size=(h * w, 1)) > 0.1).astype(np.float32)
    image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return N3DInputs(image=image, points=np.concatenate([xyz, valid], 1).astype(np.float32), map_hw=(h, w),
                     shift0=np.array([-1.0, -0.6, 1.0]), scaling=0.46, intrinsics_n=(1.2, 1.8, 0.5, 0.5),
                     source_hw=(h, w), valid_fraction=float(valid.mean()))


@pytest.mark.parametrize("size,grid,tokens", [((640, 480), (34, 46), 391), ((640, 426), (30, 46), 345),
                                              ((479, 640), (46, 34), 391), ((640, 640), (46, 46), 529)])
def test_processor_grid_matches_spec_table(engine, size, grid, tokens):
    vision = engine.encode_image(make_inputs(size[1], size[0]))
    assert vision.grid_hw == grid and vision.image_tokens == tokens
    assert tuple(vision.pixel_values.shape) == (grid[0] * grid[1], 1176)


def test_generate_applies_encoding_once_at_prefill_with_3d_positions(engine):
    inputs = make_inputs()
    merger = engine.model.model.visual.merger
    seen = {}
    calls = []
    before = merger.register_forward_pre_hook(lambda m, a: seen.__setitem__("raw", a[0].clone()), prepend=True)
    after = merger.register_forward_pre_hook(lambda m, a: seen.__setitem__("encoded", a[0].clone()))
    counter = engine.model.model.language_model.register_forward_pre_hook(
        lambda m, a, kw: calls.append(kw["inputs_embeds"].shape[1]), with_kwargs=True)
    try:
        turn = engine.run_turn(inputs, detection_text())
    finally:
        before.remove(), after.remove(), counter.remove()
    # prefill once over the whole prompt, then one token per step; the merger (and encoding) ran once
    assert calls[0] == turn.prompt_tokens and set(calls[1:]) <= {1}
    assert len(calls) == len(turn.token_ids)  # n forward passes give n tokens: no second prefill
    expected = point_encoding(torch.from_numpy(inputs.points), (480, 640), (34, 46), torch.float32)
    # the raster-order encoding is added slot by slot to the window-permuted sequence (spec 2.3)
    np.testing.assert_allclose((seen["encoded"] - seen["raw"]).numpy(), expected.numpy(), atol=2e-4)
    # M-RoPE through mm_token_type_ids: 391 image tokens occupy max(17, 23) = 23 positions, so later text
    # positions are shifted by 23 - 391 (1D positions would leave rope_deltas at 0)
    assert int(engine.model.model.rope_deltas.item()) == 23 - 391


def test_ordering_quirk_is_not_the_identity(engine):
    """The permutation the encoding is NOT undone for: most slots get another patch's encoding."""
    from transformers.vision_utils import get_vision_window_index

    grid = torch.tensor([[1, 34, 46]])
    window_index, _ = get_vision_window_index(grid, spatial_merge_size=2, window_size=112, patch_size=14)
    blocks = window_index.numpy()
    slot_patch = [(2 * (b // 23) + (k // 2), 2 * (b % 23) + (k % 2)) for b in blocks for k in range(4)]
    own = sum(1 for s, (r, c) in enumerate(slot_patch) if (s // 46, s % 46) == (r, c))
    assert own / len(slot_patch) < 0.05  # spec: ~2 % get the encoding of their own location


def test_greedy_is_repeatable_and_portrait_works(engine):
    inputs = make_inputs(640, 480)
    first = engine.run_turn(inputs, detection_text())
    second = engine.run_turn(inputs, detection_text())
    assert first.token_ids == second.token_ids and len(first.token_ids) >= 1
    assert engine.hook.applied >= 2 and not engine.hook.armed


def test_generation_settings_mirror_checkpoint(engine):
    greedy = engine.generation_config
    assert greedy.do_sample is False and greedy.repetition_penalty == 1.05
    assert 151645 in greedy.eos_token_id and 151643 in greedy.eos_token_id
    assert greedy.pad_token_id == 151645 and greedy.max_new_tokens == 6
    official = engine.make_generation_config("official", 4096)
    assert (official.do_sample, official.temperature, official.top_p, official.top_k) == (True, 0.6, 0.95, 10)
    assert official.repetition_penalty == 1.05
    with pytest.raises(InputError):
        engine.make_generation_config("beam", 10)
    with pytest.raises(InputError):
        engine.make_generation_config("greedy", 5000)


def test_prompt_must_fit_context(engine, monkeypatch):
    monkeypatch.setattr(N3DEngine, "context_length", property(lambda self: 400))
    with pytest.raises(InputError, match="exceeds the context"):
        engine.build_inputs(make_inputs(), detection_text())


def test_bad_inputs_are_refused(engine):
    inputs = make_inputs()
    inputs.image = inputs.image.resize((600, 450))
    with pytest.raises(InputError, match="long side of 640"):
        engine.encode_image(inputs)
    inputs = make_inputs()
    inputs.map_hw = (640, 480)  # wrong layout for a landscape grid
    with pytest.raises(InputError, match="reshapes it as"):
        engine.run_turn(inputs, detection_text())
    assert not engine.hook.armed


def test_missing_weights_name_the_fix(tmp_path):
    with pytest.raises(ModelNotFound, match="huggingface-cli download yuxinhk/N3D-VLM"):
        load_engine(str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(ModelNotFound, match="`model`"):
        load_engine("nobody-here/no-such-model", device="cpu", local_files_only=True)
    with pytest.raises(InputError, match="CUDA"):
        load_engine(str(tmp_path), device="cpu", quantization="4bit")


def test_split_reasoning():
    text = "<think> The 3D bbox of person is [0.27, 0.03, 2.97].\n So the height is 0.91. </think> person is 0.91 meters in height."
    answer, reasoning = split_reasoning(text)
    assert answer == "person is 0.91 meters in height."
    assert reasoning == "The 3D bbox of person is [0.27, 0.03, 2.97]. So the height is 0.91."
    assert split_reasoning("<think> still thinking") == ("", "still thinking")
    assert split_reasoning("That is True.") == ("That is True.", "")
