"""Speed work must not change answers: prefix cache and drafted/constrained decoding against plain decoding."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

from n3d_ros.engine.protocol.box_grammar import BoxDrafter, BoxGrammar, advance_text, initial_state
from n3d_ros.engine.fast_decode import DecodeStats, ImagePrefix, PrefixCache, decode
from n3d_ros.engine.protocol.tokenizer import offline_qwen_tokenizer

EOS = [151645, 151643]
DEMO2 = "bbox_0=Bbox(person,519,587,394,500,278,254,199)\nbbox_1=Bbox(orange/tangerine,720,858,73,500,161,53,84)"
DEMO3 = "bbox_0=Bbox(person,275,483,61,500,316,468,390)"
SIX_CHAIRS = "\n".join(f"bbox_{i}=Bbox(chair,{100 + 80 * i},{500 + i},{300 + 7 * i},500,{120 + i},{200 + i},{90 + i})"
                       for i in range(6))


@pytest.fixture(scope="module")
def tokenizer():
    return offline_qwen_tokenizer()


@pytest.fixture(scope="module")
def grammar(tokenizer):
    return BoxGrammar.from_tokenizer(tokenizer, EOS)


# ---------------------------------------------------------------- the grammar itself
@pytest.mark.parametrize("text", [DEMO2, DEMO3, SIX_CHAIRS, DEMO3 + "\n", ""])
def test_grammar_accepts_released_outputs_token_by_token(tokenizer, grammar, text):
    state = initial_state()
    for tid in tokenizer.encode(text, add_special_tokens=False):
        assert grammar.allowed(state)[tid], (state, tokenizer.decode([tid]))
        state = grammar.advance(state, tid)
    assert grammar.allowed(state)[EOS[0]]


@pytest.mark.parametrize("bad", [
    "bbox_1=Bbox(person,1,2,3,4,5,6,7)",        # ids start at 0
    "bbox_0=Bbox(person,1000,2,3,4,5,6,7)",     # bins are 0-999
    "bbox_0=Bbox(person,012,2,3,4,5,6,7)",      # no leading zeros (training wrote int())
    "bbox_0=Bbox(person,1,2,3,4,5,6)",          # exactly seven numbers
    "bbox_0=Bbox(,1,2,3,4,5,6,7)",              # a class is required
    "bbox_0=Bbox(person,1,2,3,4,5,6,7)\nbbox_0=",  # ids count up
    "bbox_0=Bbox(per)son,1,2,3,4,5,6,7)",
])
def test_grammar_rejects_invalid_text(bad):
    assert advance_text(initial_state(), bad) is None


def test_eos_only_where_output_may_end(grammar):
    state = advance_text(initial_state(), "bbox_0=Bbox(person,1,2")
    assert not grammar.allowed(state)[EOS[0]]
    assert grammar.allowed(advance_text(initial_state(), DEMO3))[EOS[0]]


# ---------------------------------------------------------------- decoding against a scripted model
class ScriptedCache:
    def __init__(self, tokens):
        self.tokens = list(tokens)

    def get_seq_length(self):
        return len(self.tokens)

    def crop(self, n):
        assert n < 0
        del self.tokens[n:]


class ScriptedModel:
    """A language model whose greedy continuation of the prompt is a fixed script, then EOS.

    Its second choice at every step is a comma, so a wrong constraint or a badly verified draft shows.
    """

    def __init__(self, prompt_len, script_ids, vocab):
        self.prompt_len, self.script, self.vocab = prompt_len, list(script_ids), vocab
        self.device = torch.device("cpu")
        self.model = SimpleNamespace(rope_deltas=None)
        self.comma = None

    def logits_after(self, history_len):
        k = history_len - self.prompt_len
        target = self.script[k] if k < len(self.script) else EOS[0]
        row = torch.zeros(self.vocab)
        row[self.comma] = 5.0
        row[target] = 10.0
        return row

    def __call__(self, input_ids, past_key_values, use_cache, logits_to_keep=0):
        cache = past_key_values
        rows = []
        for tid in input_ids[0].tolist():
            cache.tokens.append(tid)
            rows.append(self.logits_after(len(cache.tokens)))
        return SimpleNamespace(logits=torch.stack(rows[-logits_to_keep:])[None])  # 0 keeps every row, as HF


def run_scripted(tokenizer, grammar, text, use_grammar, use_draft, guesses=True):
    prompt = [151644] * 5
    script = tokenizer.encode(text, add_special_tokens=False)
    model = ScriptedModel(len(prompt), script, 152064)
    model.comma = tokenizer.encode(",", add_special_tokens=False)[0]
    prefix = ImagePrefix(key="frame", ids=torch.tensor([prompt]), cache=ScriptedCache(prompt),
                         rope_deltas=torch.zeros(1, 1, dtype=torch.long),
                         first_logits=model.logits_after(len(prompt)))
    stats = DecodeStats()
    processors = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.05)])
    g = grammar if use_grammar else None
    drafter = BoxDrafter(grammar, tokenizer, guesses=guesses) if use_draft else None
    out = decode(model, prefix, torch.zeros((1, 0), dtype=torch.long), processors, EOS, 4096, stats,
                 grammar=g, drafter=drafter)
    assert prefix.cache.get_seq_length() == len(prompt)  # the shared prefix is restored
    return out, stats, script


@pytest.mark.parametrize("text", [DEMO2, DEMO3, SIX_CHAIRS])
def test_constrained_and_drafted_decoding_equal_plain_greedy(tokenizer, grammar, text):
    plain, plain_stats, script = run_scripted(tokenizer, grammar, text, False, False)
    constrained, _, _ = run_scripted(tokenizer, grammar, text, True, False)
    drafted, stats, _ = run_scripted(tokenizer, grammar, text, True, True)
    assert plain == constrained == drafted == script
    lines = text.count("bbox_")
    per_line_plain = plain_stats.forward_passes / lines
    per_line_drafted = stats.forward_passes / lines
    assert per_line_drafted <= 0.6 * per_line_plain, (per_line_plain, per_line_drafted)


@pytest.mark.parametrize("text", [DEMO2, DEMO3, SIX_CHAIRS])
def test_drafting_without_guesses_keeps_to_what_is_nearly_certain(tokenizer, grammar, text):
    plain, plain_stats, script = run_scripted(tokenizer, grammar, text, False, False)
    guessed, guessed_stats, _ = run_scripted(tokenizer, grammar, text, True, True, guesses=True)
    sure, stats, _ = run_scripted(tokenizer, grammar, text, True, True, guesses=False)
    assert sure == guessed == plain == script
    # fewer passes than plain decoding, more than with guesses, and almost nothing drafted in vain
    assert guessed_stats.forward_passes < stats.forward_passes < 0.8 * plain_stats.forward_passes
    # in vain: at most a "(" per line (the model writes "(person" as one token), and ")\n" with the next
    # line's literal after the last line (the model ends there)
    wasted = stats.drafted_tokens - stats.accepted_draft_tokens
    lines = text.count("bbox_")
    end_literal = len(tokenizer.encode(f")\nbbox_{lines}=Bbox(", add_special_tokens=False))
    assert wasted <= lines + end_literal, (stats.drafted_tokens, stats.accepted_draft_tokens)
    assert guessed_stats.drafted_tokens - guessed_stats.accepted_draft_tokens > 2 * wasted


class WidthCostRuntime:
    """A runtime stand-in whose passes advance a fake clock by cost(width)."""

    def __init__(self, cost):
        self.cost, self.now, self.widths, self.restored = cost, 0.0, [], 0

    def clock(self):
        return self.now

    def restore(self, prefix):
        self.restored += 1

    def forward(self, ids):
        self.widths.append(len(ids))
        self.now += self.cost(len(ids))
        return torch.zeros(len(ids), 8)


@pytest.mark.parametrize("cost, ratio, guesses", [
    (lambda k: 0.05 + 0.001 * k, 1.06, True),   # weight reads dominate (a GPU): width is nearly free
    (lambda k: 0.02 * k ** 0.38, 1.69, False),  # llama.cpp f16 on two CPU cores: guesses cost 20%
    (lambda k: 0.039 * k ** 0.7, 2.64, False),  # compute-bound (llama.cpp q4_k_m, two CPU cores)
])
def test_wide_pass_cost_decides_whether_guesses_pay(cost, ratio, guesses):
    from n3d_ros.engine.fast_engine import CHEAP_WIDE_PASS, WIDE_PASS, wide_pass_cost

    runtime = WidthCostRuntime(cost)
    prefix = SimpleNamespace(ids=torch.tensor([[5, 6, 7]]))
    measured = wide_pass_cost(runtime, prefix, repeats=2, clock=runtime.clock)
    assert measured == pytest.approx(ratio, abs=0.01)
    assert (measured < CHEAP_WIDE_PASS) == guesses
    assert sorted(set(runtime.widths)) == [1, WIDE_PASS]
    assert runtime.restored == 2 * 2 + 1  # before every pass, and once more at the end


def test_grammar_overrides_a_model_that_wants_invalid_text(tokenizer, grammar):
    out, _, _ = run_scripted(tokenizer, grammar, "bbox_0=Bbox(person,1234,5,6,7,8,9,10)", True, True)
    text = tokenizer.decode(out)
    assert advance_text(initial_state(), text) is not None  # still grammatical
    assert text.startswith("bbox_0=Bbox(person,123,")


def test_prefix_cache_is_bounded_and_lru():
    cache = PrefixCache(capacity=2)
    for key in "abc":
        cache.put(SimpleNamespace(key=key))
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") is not None
    with pytest.raises(ValueError):
        PrefixCache(0)


# ---------------------------------------------------------------- the tiny Qwen2.5-VL, real tokenizer
@pytest.fixture(scope="module")
def engines():
    from n3d_ros.engine.fast_engine import FastN3DEngine
    from n3d_ros.engine.model import load_engine
    from n3d_ros.engine.tiny import cached_tiny_checkpoint

    base = load_engine(str(cached_tiny_checkpoint()), device="cpu", dtype="float32", max_new_tokens=40)
    base.hook.remove()  # one model, one attached encoding hook at a time (see swap_hook)
    fast = FastN3DEngine(base.model, base.tokenizer, base.image_processor, max_new_tokens=40)
    return base, fast


def tiny_inputs(seed=0, h=112, w=640):
    from PIL import Image

    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.random((h * w, 3)).astype(np.float32), np.ones((h * w, 1), np.float32)], 1)
    return SimpleNamespace(image=Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)),
                           points=points, map_hw=(h, w), shift0=np.zeros(3), scaling=1.0,
                           intrinsics_n=(1.0, 1.3, 0.5, 0.5))


def swap_hook(src, dst):
    """Both engines share one model; only the engine that runs may have its encoding hook attached."""
    from n3d_ros.engine.vision.encoding import PointEncodingHook

    src.hook.remove()
    dst.hook = PointEncodingHook(dst.model.model.visual.merger)


def test_prefix_cache_gives_identical_tokens_and_skips_the_image(engines):
    base, fast = engines
    inputs = tiny_inputs()
    swap_hook(fast, base)
    reference = [base.run_turn(inputs, f"<image>{q}").token_ids for q in ("How tall is it?", "Where is it?")]
    swap_hook(base, fast)
    fast.prefix_cache.clear()
    fast.stats = DecodeStats()
    first = fast.run_turn(inputs, "<image>How tall is it?")
    applied, prefill = fast.hook.applied, fast.stats.prefill_tokens
    forward_before = fast.stats.forward_tokens
    second = fast.run_turn(inputs, "<image>Where is it?")
    assert [first.token_ids, second.token_ids] == reference
    assert fast.hook.applied == applied and fast.stats.prefill_tokens == prefill  # no image prefill again
    prompt_suffix = second.prompt_tokens - prefill
    assert fast.stats.forward_tokens - forward_before == prompt_suffix + len(second.token_ids) - 1
    other = tiny_inputs(seed=1)
    fast.run_turn(other, "<image>Where is it?")
    assert fast.hook.applied == applied + 1 and len(fast.prefix_cache) == 1  # new frame: old prefix dropped


def test_drafting_on_the_tiny_model_changes_passes_not_tokens(engines):
    from n3d_ros.engine.protocol.prompts import detection_text

    _, fast = engines
    inputs = tiny_inputs(seed=2)
    results = {}
    for draft in (False, True):
        fast.draft, fast.stats = draft, DecodeStats()
        fast._turn_mode = "detect"
        try:
            out = fast.run_turn(inputs, detection_text())
        finally:
            fast._turn_mode = None
        results[draft] = (out.token_ids, fast.stats.forward_passes)
        assert advance_text(initial_state(), out.text) is not None
    assert results[True][0] == results[False][0]
    assert results[True][1] < results[False][1]
    fast.draft = True


def test_single_object_stop_ends_after_the_first_box_line(tokenizer, grammar):
    from n3d_ros.engine.fast_decode import count_box_lines

    prompt = [151644] * 5
    script = tokenizer.encode(DEMO2, add_special_tokens=False)
    model = ScriptedModel(len(prompt), script, 152064)
    model.comma = tokenizer.encode(",", add_special_tokens=False)[0]
    prefix = ImagePrefix(key="frame", ids=torch.tensor([prompt]), cache=ScriptedCache(prompt),
                         rope_deltas=torch.zeros(1, 1, dtype=torch.long), first_logits=model.logits_after(len(prompt)))
    out = decode(model, prefix, torch.zeros((1, 0), dtype=torch.long), LogitsProcessorList(), EOS, 4096,
                 DecodeStats(), grammar=grammar, drafter=BoxDrafter(grammar, tokenizer),
                 stop=lambda ids: count_box_lines(tokenizer.decode(ids)) >= 1)
    text = tokenizer.decode(out)
    assert text.split("\n")[0] == DEMO2.split("\n")[0] and count_box_lines(text) == 1
    assert prefix.cache.get_seq_length() == len(prompt)


def test_engine_single_object_stop_keeps_exactly_one_whole_line(engines):
    from n3d_ros.engine.fast_decode import count_box_lines

    _, fast = engines
    fast.single_object_stop = True
    try:
        for tokens in ([], DEMO2, DEMO3 + "\n" + "bbox_1=Bbox(x,1"):
            ids = fast.tokenizer.encode(tokens, add_special_tokens=False) if tokens else []
            kept = fast.tokenizer.decode(fast._first_box_only(ids))
            assert count_box_lines(kept) == (1 if tokens else 0)
            # ")" and "\n" may share one BPE token, so the kept text may carry the newline.
            assert kept.rstrip("\n") == (tokens.split("\n")[0] if tokens else "")
    finally:
        fast.single_object_stop = False


def test_official_sampling_under_the_grammar_stays_grammatical(engines):
    """Top-k/top-p must act on grammar-allowed tokens: masking after them could leave nothing to sample."""
    from n3d_ros.engine.fast_engine import FastN3DEngine

    _, fast = engines
    fast.hook.remove()
    sampler = FastN3DEngine(fast.model, fast.tokenizer, fast.image_processor, sampling="official", seed=0,
                            max_new_tokens=40)
    try:
        assert sampler.generation_config.do_sample and sampler.warpers  # the official top-k/top-p are on
        texts = [sampler.detect(tiny_inputs(seed=s)).turn.text for s in range(3)]
        for text in texts:
            assert text.startswith("bbox_0=Bbox(") and advance_text(initial_state(), text) is not None, text
        sampler._generator.manual_seed(0)
        assert sampler.detect(tiny_inputs(seed=0)).turn.text == texts[0]  # seeded: reproducible
        assert sampler.draft_guesses is True and sampler.wide_pass_ratio is None  # fixed, not timed
    finally:
        swap_hook(sampler, fast)
