"""The vision stage and the transformers runtime reproduce the stock one-call prefill (no llama.cpp needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from n3d_ros.engine.fast_decode import DecodeStats
from n3d_ros.engine.model import load_engine
from n3d_ros.engine.protocol.prompts import detection_text
from n3d_ros.engine.runtimes.transformers_rt import TransformersRuntime
from n3d_ros.engine.tiny import cached_tiny_checkpoint
from n3d_ros.engine.vision.stage import image_embeddings, mrope_positions


@pytest.fixture(scope="module")
def engine():
    eng = load_engine(str(cached_tiny_checkpoint()), device="cpu", dtype="float32", max_new_tokens=8)
    yield eng
    eng.close()


def frame(h, w, seed=0):
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.random((h * w, 3)).astype(np.float32), np.ones((h * w, 1), np.float32)], 1)
    return SimpleNamespace(image=Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)),
                           points=points, map_hw=(h, w))


@pytest.mark.parametrize("hw", [(112, 640), (640, 112), (224, 640)])
def test_mrope_positions_equal_the_models_rope_index(engine, hw):
    turn = engine.build_inputs(frame(*hw), detection_text())
    kwargs = turn.model_kwargs
    expected, deltas = engine.model.model.get_rope_index(
        kwargs["input_ids"], mm_token_type_ids=kwargs["mm_token_type_ids"], image_grid_thw=kwargs["image_grid_thw"])
    positions, delta = mrope_positions(turn.prompt.ids, engine.image_token_id, turn.grid_hw, engine.merge_size)
    np.testing.assert_array_equal(positions, expected[:, 0].numpy())
    assert delta == int(deltas.item()) and delta < 0  # the image is shorter in positions than in tokens


def test_text_only_prompt_has_1d_positions():
    positions, delta = mrope_positions([1, 2, 3], 99, (4, 4), 2)
    np.testing.assert_array_equal(positions, np.tile(np.arange(3), (3, 1)))
    assert delta == 0


def test_positions_refuse_an_image_of_the_wrong_size():
    with pytest.raises(ValueError, match="image grid"):
        mrope_positions([1, 99, 99, 99, 2], 99, (4, 4), 2)  # 3 pads, grid gives 2x2


def test_transformers_runtime_prefill_equals_the_stock_one_call_prefill(engine):
    """Embeddings + positions through the runtime == input_ids + pixel_values through the model.

    Equal up to float32 rounding only: the runtime asks the output layer for the last row alone, and a
    one-row matmul sums in another order than the full (P x vocab) one.
    """
    inputs = frame(112, 640, seed=3)
    turn = engine.build_inputs(inputs, detection_text())
    kwargs = turn.model_kwargs
    engine.hook.arm(turn.points, turn.map_hw, turn.grid_hw)
    with torch.inference_mode():
        stock = engine.model(**kwargs).logits[0, -1].float()
    engine.hook.disarm()
    embeds = image_embeddings(engine.model, engine.hook, kwargs["pixel_values"], kwargs["image_grid_thw"],
                              turn.points, turn.map_hw, turn.grid_hw)
    positions, delta = mrope_positions(turn.prompt.ids, engine.image_token_id, turn.grid_hw, engine.merge_size)
    runtime = TransformersRuntime(engine.model)
    stats = DecodeStats()
    prefix = runtime.prefill("k", kwargs["input_ids"], embeds, positions, stats)
    torch.testing.assert_close(prefix.first_logits, stock, rtol=0, atol=1e-5)
    assert prefix.rope_delta == delta and runtime.length() == len(turn.prompt)
    assert stats.prefill_tokens == len(turn.prompt) and stats.forward_passes == 1
    # forward / truncate / restore keep the working cache consistent with the prefix
    first = runtime.forward([11, 12, 13])
    assert first.shape == (3, runtime.vocab_size) and runtime.length() == len(turn.prompt) + 3
    runtime.truncate(len(turn.prompt) + 1)
    again = runtime.forward([12, 13])
    torch.testing.assert_close(again, first[1:], rtol=0, atol=1e-5)
    runtime.restore(prefix)
    last = runtime.forward([11, 12, 13], last_only=True)  # only the row a prompt segment needs
    assert last.shape == (1, runtime.vocab_size) and runtime.length() == len(turn.prompt) + 3
    torch.testing.assert_close(last[0], first[-1], rtol=0, atol=1e-5)
    runtime.restore(prefix)
    assert runtime.length() == len(turn.prompt)

