"""The HiSpatial network and engine on the tiny random-weight checkpoint (same architecture as HiSpatial-3B)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from n3d_ros.core.types import Cancelled, InputError, PinholeCamera, RGBDFrame
from n3d_ros.hispatial.depth import EMBED_CHANNELS, xyz_embedding
from n3d_ros.hispatial.loading import ModelNotFound, load_hispatial, read_weights, to_v5_key
from n3d_ros.hispatial.pointmap import build_xyz_inputs
from n3d_ros.hispatial.tiny import cached_tiny_checkpoint

CAM = PinholeCamera(width=320, height=240, fx=300.0, fy=300.0, cx=159.5, cy=119.5)


def _frame(seed=0, depth=1.5):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:240, 0:320]
    return RGBDFrame(color=rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
                     depth=(depth + 0.003 * rows + 0.001 * cols).astype(np.float32), camera=CAM)


@pytest.fixture(scope="module")
def engine():
    engine = load_hispatial(str(cached_tiny_checkpoint()), device="cpu", dtype="float32", max_new_tokens=6)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def inputs():
    return build_xyz_inputs(_frame())


@pytest.fixture(scope="module")
def features(engine, inputs):
    return engine.encode_frame(inputs)


class _Counter:
    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.calls += 1

    def remove(self):
        self.handle.remove()


# ------------------------------------------------------------------ checkpoint layout
def test_weights_file_uses_the_published_450_names():
    state = read_weights(cached_tiny_checkpoint())
    keys = set(state)
    assert "vision_tower.vision_model.embeddings.patch_embedding.weight" in keys
    assert "language_model.model.embed_tokens.weight" in keys and "language_model.lm_head.weight" in keys
    assert tuple(state["depth_encoder.conv.weight"].shape) == (48, 193, 14, 14)
    assert tuple(state["multi_modal_projector.linear.weight"].shape) == (64, 96)  # [SigLIP | depth] -> text
    assert to_v5_key("vision_tower.vision_model.post_layernorm.weight") == "model.vision_tower.post_layernorm.weight"
    assert to_v5_key("language_model.lm_head.weight") == "lm_head.weight"


def test_loaded_weights_equal_the_file(engine):
    state = read_weights(cached_tiny_checkpoint())
    net = engine.network
    assert torch.equal(net.model.depth_encoder.conv.weight, state["depth_encoder.conv.weight"])
    assert torch.equal(net.model.language_model.layers[1].mlp.down_proj.weight,
                       state["language_model.model.layers.1.mlp.down_proj.weight"])
    assert net.lm_head.weight.data_ptr() == net.model.language_model.embed_tokens.weight.data_ptr()


# ------------------------------------------------------------------ point-map encoder
def test_positional_embedding_at_chosen_points():
    xyz = torch.zeros(1, 4, 2, 3)
    points = {(0, 1): (0.61, -0.20, 1.17, 1.0), (1, 2): (-2.57, 13.22, 250.0, 0.0), (1, 0): (0.0, 0.0, 0.0, 0.0)}
    for (i, j), value in points.items():
        xyz[0, :, i, j] = torch.tensor(value)
    emb = xyz_embedding(xyz)
    assert emb.shape == (1, EMBED_CHANNELS, 2, 3) and emb.dtype == torch.float32
    omega = np.array([1.0 / 10000 ** (k / 32) for k in range(32)])
    for (i, j), (x, y, z, m) in points.items():
        expected = np.concatenate([np.sin(x * omega), np.cos(x * omega), np.sin(y * omega), np.cos(y * omega),
                                   np.sin(z * omega), np.cos(z * omega), [m]])
        np.testing.assert_allclose(emb[0, :, i, j].numpy(), expected, atol=3e-5)  # fp32 angles up to 250 rad
    assert emb[0, 32, 1, 0] == 1.0 and emb[0, 0, 1, 0] == 0.0  # cos block after the sin block, not interleaved


def test_depth_tokens_are_row_major_patches(engine, inputs):
    conv = engine.network.model.depth_encoder.conv
    xyz = torch.as_tensor(inputs.xyz)[None]
    with torch.no_grad():
        tokens = engine.network.model.depth_encoder(xyz)
        emb = xyz_embedding(xyz)
        for row, col in [(0, 0), (0, 31), (5, 7), (31, 31)]:
            patch = emb[0, :, 14 * row:14 * row + 14, 14 * col:14 * col + 14]
            manual = torch.einsum("ochw,chw->o", conv.weight, patch) + conv.bias
            torch.testing.assert_close(tokens[0, 32 * row + col], manual, atol=1e-4, rtol=1e-4)
    assert tokens.shape == (1, 1024, 48)


def test_features_concatenate_siglip_then_depth(engine, inputs):
    net = engine.network
    frame = engine.encode_frame(inputs)
    assert frame.features.shape == (1, 1024, 64)
    with torch.no_grad():
        pixels = engine.pixel_values(inputs.rgb)
        vision = net.model.vision_tower(pixels).last_hidden_state
        depth = net.model.depth_encoder(torch.as_tensor(inputs.xyz)[None])
        weight, bias = net.model.multi_modal_projector.linear.weight, net.model.multi_modal_projector.linear.bias
        manual = vision @ weight[:, :48].T + depth @ weight[:, 48:].T + bias
    torch.testing.assert_close(frame.features, manual, atol=1e-4, rtol=1e-4)
    assert pixels.min() >= -1.0 and pixels.max() <= 1.0
    np.testing.assert_allclose(pixels[0, :, 5, 9].numpy(), inputs.rgb[5, 9] / 127.5 - 1.0, atol=1e-6)


# ------------------------------------------------------------------ prefill and decoding
def test_prefill_injects_raw_features_once_and_decode_uses_the_cache(engine, inputs):
    net = engine.network
    depth_calls, vision_calls = _Counter(net.model.depth_encoder), _Counter(net.model.vision_tower)
    seen = []
    handle = net.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["inputs_embeds"].detach().clone()), with_kwargs=True)
    try:
        frame = engine.encode_frame(inputs)
        out = engine.ask(frame, "How far is the red mug from the camera?", max_new_tokens=4)
        engine.ask(frame, "How tall would you say the lamp appears to be?", max_new_tokens=4)
    finally:
        handle.remove()
        depth_calls.remove()
        vision_calls.remove()
    assert depth_calls.calls == 1 and vision_calls.calls == 1  # once per frame, never while decoding
    prefill = seen[0]
    assert prefill.shape[1] == len(out.prompt)
    torch.testing.assert_close(prefill[0, :1024], frame.features[0])  # raw projector output, no / sqrt(hidden)
    embed = net.get_input_embeddings()
    text_ids = torch.tensor(out.prompt.ids[1024:])
    torch.testing.assert_close(prefill[0, 1024:], embed.weight[text_ids] * 64 ** 0.5)  # text: x sqrt(hidden)
    assert all(step.shape[1] == 1 for step in seen[1:len(out.token_ids)])  # one token per decode step


def test_greedy_is_repeatable_and_reads_the_point_map(engine, features):
    first = engine.ask(features, "How far is the red mug from the camera?")
    again = engine.ask(features, "How far is the red mug from the camera?")
    assert first.token_ids == again.token_ids and 1 <= len(first.token_ids) <= 6
    farther = engine.encode_frame(build_xyz_inputs(_frame(depth=4.0)))
    assert not torch.allclose(farther.features, features.features)  # same image, other depth -> other features


def _image_token_state(engine, frame, question, token_type_ids):
    prompt = engine.prompts.encode(question)
    ids = torch.tensor([prompt.ids])
    with torch.no_grad():
        out = engine.network(inputs_embeds=engine.prompt_embeddings(ids, frame.features),
                             attention_mask=torch.ones_like(ids), token_type_ids=token_type_ids(ids),
                             output_hidden_states=True)
    return out.hidden_states[-1][0, 0]


def test_prefix_is_bidirectional(engine, features):
    """With token_type_ids = 0 over the whole prompt the first image token sees the question."""
    frame = features
    zeros = torch.zeros_like
    a = _image_token_state(engine, frame, "How far is the red mug from the camera?", zeros)
    b = _image_token_state(engine, frame, "Is there any chair to the left of the table?", zeros)
    assert not torch.allclose(a, b)
    # control: with the question marked as causal suffix (type 1) the image tokens cannot see it
    def prefix_only(ids):
        types = torch.ones_like(ids)
        types[:, :1025] = 0  # image tokens and <bos>
        return types

    c = _image_token_state(engine, frame, "How far is the red mug from the camera?", prefix_only)
    d = _image_token_state(engine, frame, "Is there any chair to the left of the table?", prefix_only)
    torch.testing.assert_close(c, d)


def test_cancel_stops_decoding(engine, features):
    engine.cancelled = lambda: True
    try:
        with pytest.raises(Cancelled):
            engine.ask(features, "How far is the red mug from the camera?")
    finally:
        engine.cancelled = None


def test_wrong_image_size_is_refused(engine):
    with pytest.raises(InputError, match="448x448"):
        engine.pixel_values(np.zeros((224, 224, 3), dtype=np.uint8))


def test_bfloat16_keeps_the_embedding_in_float32(engine, inputs):
    """bf16 weights, fp32 angles: depth tokens stay close to fp32 even at 250 m (bf16 angles would not)."""
    low_engine = load_hispatial(str(cached_tiny_checkpoint()), device="cpu", dtype="bfloat16")
    try:
        encoder = low_engine.network.model.depth_encoder
        assert encoder.conv.weight.dtype == torch.bfloat16
        xyz = torch.as_tensor(inputs.xyz[:, :56, :56].copy())[None]
        xyz[0, 2, :14, :14] = 250.0  # far clamp value: angles up to 250 rad
        with torch.no_grad():
            low, high = encoder(xyz).float(), engine.network.model.depth_encoder(xyz)
        assert (low - high).abs().max() <= 0.05 * high.abs().max()
    finally:
        low_engine.close()


# ------------------------------------------------------------------ wrong checkpoints
def test_missing_directory_and_uncached_hub_id(tmp_path):
    with pytest.raises(ModelNotFound, match="huggingface-cli download lhzzzzzy/HiSpatial-3B"):
        load_hispatial(str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(ModelNotFound, match="not found"):
        load_hispatial("nobody-here/not-a-cached-model", device="cpu")


def test_n3d_checkpoint_is_refused():
    from n3d_ros.engine.tiny import cached_tiny_checkpoint as n3d_tiny

    with pytest.raises(InputError, match="paligemma"):
        load_hispatial(str(n3d_tiny()), device="cpu")


def test_checkpoint_without_depth_encoder_is_refused(tmp_path):
    source = cached_tiny_checkpoint()
    target = tmp_path / "plain"
    shutil.copytree(source, target)
    state = torch.load(target / "weights.pt", weights_only=True)
    del state["depth_encoder.conv.weight"], state["depth_encoder.conv.bias"]
    torch.save(state, target / "weights.pt")
    with pytest.raises(InputError, match=r"missing \['model.depth_encoder.conv.bias'"):
        load_hispatial(str(target), device="cpu")
    (target / "weights.pt").unlink()
    with pytest.raises(InputError, match="weights.pt"):
        load_hispatial(str(target), device="cpu")
