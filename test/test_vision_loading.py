"""Loading the vision tower alone (for a runtime that runs the language model): same embeddings, no LM read."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from n3d_ros.core.types import InputError
from n3d_ros.engine.checkpoint import safetensor_files, vision_tower_state
from n3d_ros.engine.model import load_engine
from n3d_ros.engine.protocol.prompts import detection_text
from n3d_ros.engine.tiny import cached_tiny_checkpoint
from n3d_ros.engine.vision.stage import image_embeddings
from test_engine_speed import tiny_inputs  # the engine tests' synthetic frame


def embeddings(engine, inputs):
    vision = engine.encode_image(inputs)
    turn = engine.build_inputs(inputs, detection_text(), vision)
    kwargs = turn.model_kwargs
    return image_embeddings(engine.model, engine.hook, kwargs["pixel_values"], kwargs["image_grid_thw"],
                            turn.points, turn.map_hw, turn.grid_hw)


@pytest.fixture(scope="module")
def full_and_vision_only():
    source = str(cached_tiny_checkpoint())
    full = load_engine(source, device="cpu", dtype="float32")
    alone = load_engine(source, device="cpu", dtype="float32", language_model=False)
    return full, alone


def test_vision_only_embeddings_equal_the_full_model(full_and_vision_only):
    full, alone = full_and_vision_only
    inputs = tiny_inputs(seed=3)
    assert torch.equal(embeddings(full, inputs), embeddings(alone, inputs))
    # the computed buffers (rotary inverse frequencies) are the constructor's, not meta leftovers
    for (name, a), (_, b) in zip(full.model.model.visual.named_buffers(), alone.model.model.visual.named_buffers()):
        assert torch.equal(a, b), name


def test_vision_only_holds_no_language_model(full_and_vision_only):
    full, alone = full_and_vision_only
    assert alone.model.model.language_model is None and alone.model.lm_head is None
    held = sum(p.numel() for p in alone.model.parameters())
    assert held == sum(p.numel() for p in full.model.model.visual.parameters())
    assert all(p.device.type == "cpu" for p in alone.model.parameters())  # nothing left on meta
    assert held < sum(p.numel() for p in full.model.parameters())


def sharded_copy(tmp_path, prefix):
    """The tiny checkpoint re-saved as two shards with the vision keys under ``prefix``."""
    source = cached_tiny_checkpoint()
    tensors = {}
    for path in safetensor_files(str(source)):
        tensors.update(load_file(str(path)))
    renamed = {(prefix + k[len("visual."):] if k.startswith("visual.") else k): v.contiguous() for k, v in tensors.items()}
    keys = sorted(renamed)
    half = len(keys) // 2
    weight_map = {}
    for index, part in enumerate((keys[:half], keys[half:])):
        name = f"model-{index + 1:05d}-of-00002.safetensors"
        save_file({k: renamed[k] for k in part}, str(tmp_path / name))
        weight_map.update({k: name for k in part})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json",
                 "tokenizer_config.json"):
        if (source / name).is_file():
            (tmp_path / name).write_bytes((source / name).read_bytes())
    return tmp_path, tensors


@pytest.mark.parametrize("prefix", ["visual.", "model.visual."])
def test_vision_state_from_shards_under_either_prefix(tmp_path, prefix, full_and_vision_only):
    directory, tensors = sharded_copy(tmp_path, prefix)
    state = vision_tower_state(str(directory))
    expected = {k[len("visual."):]: v for k, v in tensors.items() if k.startswith("visual.")}
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    alone = load_engine(str(directory), device="cpu", dtype="float32", language_model=False)
    inputs = tiny_inputs(seed=1)
    assert torch.equal(embeddings(alone, inputs), embeddings(full_and_vision_only[0], inputs))


def drop_tensors(directory, dropped):
    """Remove the keys for which dropped(key) holds from every shard and from the index."""
    index = directory / "model.safetensors.index.json"
    meta = json.loads(index.read_text())
    meta["weight_map"] = {k: v for k, v in meta["weight_map"].items() if not dropped(k)}
    index.write_text(json.dumps(meta))
    for path in sorted(directory.glob("*.safetensors")):
        save_file({k: v for k, v in load_file(str(path)).items() if not dropped(k)}, str(path))


def test_a_tower_that_does_not_fit_is_refused(tmp_path):
    directory, _ = sharded_copy(tmp_path, "visual.")
    drop_tensors(directory, lambda key: key.startswith("visual.merger."))
    with pytest.raises(InputError, match="does not fit Qwen2.5-VL's: missing .*merger"):
        load_engine(str(directory), device="cpu", dtype="float32", language_model=False)


def test_a_checkpoint_without_vision_tensors_is_refused(tmp_path):
    directory, _ = sharded_copy(tmp_path, "visual.")
    drop_tensors(directory, lambda key: key.startswith("visual."))
    with pytest.raises(InputError, match="no vision-tower tensors"):
        vision_tower_state(str(directory))


def test_an_index_that_names_a_missing_tensor_is_refused(tmp_path):
    directory, _ = sharded_copy(tmp_path, "visual.")
    for path in sorted(directory.glob("*.safetensors")):  # the shards lose the merger, the index does not
        save_file({k: v for k, v in load_file(str(path)).items() if not k.startswith("visual.merger.")}, str(path))
    with pytest.raises(InputError, match="its index puts .*merger.* which lacks them"):
        vision_tower_state(str(directory))
