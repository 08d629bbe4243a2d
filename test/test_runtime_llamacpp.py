"""The llama.cpp runtime against the transformers runtime on the tiny checkpoint exported at f32.

Acceptance (issue 13): the same greedy tokens for detection, grounding and auto-split turns 1 and 2, with the
prefix cache and drafting on and off; logits within LOGIT_ATOL. The f32 export with an f32 KV cache runs the
same arithmetic in another order and with llama.cpp's own float32 RoPE angles: measured max |d logit| 8.9e-4
over the prefill row and a 4-token verify step (positions ~100); the tolerance is about twice that.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

try:
    import llama_cpp  # noqa: F401
except ImportError as exc:  # CI installs it (ci/requirements-test.txt); a robot may not
    pytest.skip(f"llama_cpp is not importable ({exc}): pip install llama-cpp-python", allow_module_level=True)

from n3d_ros.engine.fast_decode import DecodeStats
from n3d_ros.engine.fast_engine import CHEAP_WIDE_PASS, FastN3DEngine
from n3d_ros.engine.model import load_engine
from n3d_ros.engine.runtimes.gguf_export import export_gguf
from n3d_ros.engine.runtimes.llamacpp_rt import LlamaCppRuntime
from n3d_ros.engine.runtimes.select import make_runtime
from n3d_ros.engine.tiny import cached_tiny_checkpoint
from test_engine_speed import tiny_inputs  # the engine tests' synthetic frame

LOGIT_ATOL = 2e-3
NEW_TOKENS = 40
QUESTION = "Is the chair to the left of the table?"


@pytest.fixture(scope="module")
def f32_gguf(tmp_path_factory):
    return export_gguf(cached_tiny_checkpoint(), tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", "f32")


def tiny_engine(runtime_name, gguf, **options):
    # llama.cpp: the vision tower alone is loaded into torch, which proves that engine needs nothing else there
    base = load_engine(str(cached_tiny_checkpoint()), device="cpu", dtype="float32", max_new_tokens=NEW_TOKENS,
                       language_model=runtime_name != "llamacpp")
    runtime = None
    if runtime_name == "llamacpp":
        # one thread: the tiny model gains nothing from more, and llama.cpp's spinning threads crawl on a
        # machine whose cores are busy with other tests
        runtime = make_runtime(base, "llamacpp", str(gguf), n_threads=1)
    return FastN3DEngine.from_engine(base, runtime=runtime, **options)


@pytest.fixture(scope="module")
def engines(f32_gguf):
    pair = {name: tiny_engine(name, f32_gguf, prefix_cache_size=2) for name in ("transformers", "llamacpp")}
    yield pair
    for engine in pair.values():
        engine.close()


def flows(engine, inputs):
    """Token ids of every turn kind the pipeline runs."""
    detected = engine.detect(inputs).turn.token_ids
    grounded = engine.ground(inputs, "chair").turn.token_ids
    turn1 = engine.ground_question(inputs, QUESTION)
    _, _, turn2 = engine.answer(inputs, QUESTION, turn1)
    return {"detect": detected, "ground": grounded, "auto_split_turn1": turn1.turn.token_ids,
            "auto_split_turn2": turn2.token_ids}


@pytest.mark.parametrize("prefix_cache,draft", list(itertools.product([True, False], [True, False])))
def test_same_greedy_tokens_as_transformers(engines, prefix_cache, draft):
    results = {}
    for name, engine in engines.items():
        engine.use_prefix_cache, engine.draft = prefix_cache, draft
        engine.prefix_cache.clear()
        results[name] = flows(engine, tiny_inputs(seed=4))
    assert results["llamacpp"] == results["transformers"]
    assert all(len(ids) > 5 for ids in results["transformers"].values())  # real decoding, not an early EOS


def test_logits_agree_within_tolerance(engines):
    """Prefill logits and a 4-token verify step, llama.cpp vs transformers."""
    got = {}
    for name, engine in engines.items():
        inputs = tiny_inputs(seed=5)
        turn = engine.build_inputs(inputs, "<image>Where is the chair?")
        engine.prefix_cache.clear()
        prefix, end = engine._prefix_for(turn)
        engine.runtime.restore(prefix)
        step = engine.runtime.forward(turn.prompt.ids[end:end + 4])
        engine.runtime.restore(prefix)
        last = engine.runtime.forward(turn.prompt.ids[end:end + 4], last_only=True)  # a prompt segment
        assert last.shape == (1, step.shape[1]) and engine.runtime.length() == prefix.length + 4
        torch.testing.assert_close(last[0], step[-1], rtol=0, atol=1e-4)
        engine.runtime.restore(prefix)
        got[name] = torch.cat([prefix.first_logits[None], step])
    diff = (got["llamacpp"] - got["transformers"]).abs().max().item()
    assert got["llamacpp"].shape == got["transformers"].shape
    assert diff <= LOGIT_ATOL, diff
    # the greedy choice of every row agrees, and the tolerance is small next to the spread of the logits
    assert torch.equal(got["llamacpp"].argmax(dim=1), got["transformers"].argmax(dim=1))
    assert diff < 0.05 * got["transformers"].std(dim=1).min().item(), (diff, got["transformers"].std(dim=1))


def test_prefix_is_reused_and_restored_across_frames(engines):
    """Second question: no image prefill. Frame A, frame B, frame A: A's snapshot is loaded back exactly."""
    engine = engines["llamacpp"]
    engine.use_prefix_cache, engine.draft = True, True
    engine.prefix_cache.clear()
    frame_a, frame_b = tiny_inputs(seed=6), tiny_inputs(seed=7)
    first = engine.detect(frame_a).turn.token_ids
    applied, prefill = engine.hook.applied, engine.stats.prefill_tokens
    again = engine.detect(frame_a).turn.token_ids
    assert again == first and engine.hook.applied == applied and engine.stats.prefill_tokens == prefill
    other = engine.detect(frame_b).turn.token_ids
    back = engine.detect(frame_a).turn.token_ids  # frame A's prefix is not resident any more
    assert back == first and engine.hook.applied == applied + 1 and len(engine.prefix_cache) == 2
    engine.prefix_cache.clear()
    assert engine.detect(frame_b).turn.token_ids == other


def test_drafting_saves_passes_on_llamacpp_too(engines):
    engine = engines["llamacpp"]
    engine.use_prefix_cache = True
    passes = {}
    for draft in (False, True):
        engine.draft, engine.stats = draft, DecodeStats()
        engine.prefix_cache.clear()
        tokens = engine.detect(tiny_inputs(seed=8)).turn.token_ids
        passes[draft] = (tokens, engine.stats.forward_passes)
    assert passes[True][0] == passes[False][0] and passes[True][1] < passes[False][1]
    # whether the drafter guesses was measured on this runtime at its first prefill, not assumed
    assert engine.wide_pass_ratio > 0 and engine.draft_guesses == (engine.wide_pass_ratio < CHEAP_WIDE_PASS)


def test_runtime_refuses_what_it_cannot_hold(f32_gguf):
    runtime = LlamaCppRuntime(f32_gguf, image_token_id=151655, n_ctx=64, n_threads=1)
    try:
        assert runtime.vocab_size == 152064 and runtime.hidden_size == 64 and runtime.kv_type == "f32"
        with pytest.raises(Exception, match="does not fit the llama.cpp context"):
            runtime.prefill("k", torch.ones((1, 80), dtype=torch.long), None, np.zeros((3, 80), np.int64),
                            DecodeStats())
        with pytest.raises(ValueError, match="image embeddings"):
            ids = torch.tensor([[1, 151655, 151655, 2]])
            runtime.prefill("k", ids, torch.zeros(3, 64), np.zeros((3, 4), np.int64), DecodeStats())
    finally:
        runtime.close()
