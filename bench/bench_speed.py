#!/usr/bin/env python3
"""Speed of the N3D engine: image-prefix cache and drafted box decoding, against the plain path, in one run.

Prints medians over repeats and ratios to the baseline measured in the same run:
  1. second question on a frame: time to first token and total time, plain generate vs prefix cache,
     and how many tokens each fed to the model;
  2. forward passes and generated tokens per box line, unconstrained vs constrained+drafted, for the
     released N3D outputs (replayed through a scripted model: the real model's token choices), for the
     tiny random model, and for the tiny model after a short fine-tune on box lines (trained and cached on
     first use, a few minutes);
  3. the decode-speed ceiling of common GPUs for the 7B model (memory bandwidth / bytes per token).

Usage: python bench/bench_speed.py [--repeats 5] [--model DIR_OR_HUB_ID --device cuda --dtype bfloat16]
Without --model it builds the tiny random-weight checkpoint (CPU, offline).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from test_engine_speed import tiny_inputs  # noqa: E402  (the same synthetic frame the tests use)
from timing import median_s as median_time  # noqa: E402



def bench_prefix_cache(path, device, dtype, repeats):
    from n3d_ros.engine.fast_decode import DecodeStats
    from n3d_ros.engine.fast_engine import FastN3DEngine
    from n3d_ros.engine.model import load_engine

    inputs = tiny_inputs(h=480)
    questions = ("<image>How tall is the red box?", "<image>Where is the blue cylinder?")
    rows = []
    for new_tokens in (1, 32):
        base = load_engine(path, device=device, dtype=dtype, max_new_tokens=new_tokens)
        base.run_turn(inputs, questions[0])  # warm-up (allocator, kernels)
        plain = median_time(lambda: base.run_turn(inputs, questions[1]), repeats)
        base.hook.remove()
        fast = FastN3DEngine(base.model, base.tokenizer, base.image_processor, max_new_tokens=new_tokens)
        fast.run_turn(inputs, questions[0])  # first question on the frame fills the prefix cache
        fast.stats = DecodeStats()
        cached = median_time(lambda: fast.run_turn(inputs, questions[1]), repeats)
        fed_cached = fast.stats.forward_tokens / repeats
        prompt_len = fast.build_inputs(inputs, questions[1]).prompt.ids.__len__()
        rows.append((new_tokens, plain, cached, prompt_len + new_tokens - 1, fed_cached))
        fast.close()
    print("\n1. Second question on the same frame (tiny model, 640x480 frame, 391 image tokens)")
    print(f"   {'new tokens':>10} {'plain s':>9} {'cached s':>9} {'speed-up':>9} {'fed plain':>10} {'fed cached':>11}")
    for new_tokens, plain, cached, fed_plain, fed_cached in rows:
        label = "TTFT" if new_tokens == 1 else "total"
        print(f"   {new_tokens:>6} ({label:>5}) {plain:9.3f} {cached:9.3f} {plain / cached:8.1f}x "
              f"{fed_plain:10.0f} {fed_cached:11.0f}")


def bench_drafting(path, device, dtype):
    from n3d_ros.engine.protocol.box_grammar import BoxGrammar, advance_text, initial_state
    from n3d_ros.engine.fast_decode import DecodeStats
    from n3d_ros.engine.fast_engine import FastN3DEngine
    from n3d_ros.engine.model import load_engine
    from n3d_ros.engine.protocol.prompts import detection_text
    from n3d_ros.engine.protocol.tokenizer import offline_qwen_tokenizer
    from test_engine_speed import DEMO2, DEMO3, EOS, SIX_CHAIRS, run_scripted

    print("\n2. Forward passes per box line (greedy; outputs identical in every row)")
    print(f"   {'output':<28} {'lines':>5} {'tokens':>6} {'passes plain':>12} {'passes drafted':>14} {'reduction':>9}")
    tokenizer = offline_qwen_tokenizer()
    grammar = BoxGrammar.from_tokenizer(tokenizer, EOS)
    for name, text in (("released demo2", DEMO2), ("released demo3", DEMO3), ("six chairs", SIX_CHAIRS)):
        plain_ids, plain, _ = run_scripted(tokenizer, grammar, text, False, False)
        drafted_ids, drafted, _ = run_scripted(tokenizer, grammar, text, True, True)
        assert plain_ids == drafted_ids
        lines = text.count("bbox_")
        print(f"   {name:<28} {lines:5d} {len(plain_ids):6d} {plain.forward_passes / lines:12.1f} "
              f"{drafted.forward_passes / lines:14.1f} {1 - drafted.forward_passes / plain.forward_passes:8.0%}")
    base = load_engine(path, device=device, dtype=dtype, max_new_tokens=200)
    base.hook.remove()
    fast = FastN3DEngine(base.model, base.tokenizer, base.image_processor, max_new_tokens=200)
    results = {}
    inputs = tiny_inputs(seed=3, h=480)
    fast._turn_mode = "detect"
    fast.run_turn(inputs, detection_text())  # warm-up: image prefix, grammar masks
    for draft in (False, True):
        fast.draft, fast.stats, fast._turn_mode = draft, DecodeStats(), "detect"
        start = time.perf_counter()
        out = fast.run_turn(inputs, detection_text())
        results[draft] = (out, fast.stats, time.perf_counter() - start)
    fast._turn_mode = None
    (plain_out, plain_stats, plain_s), (out, stats, drafted_s) = results[False], results[True]
    assert plain_out.token_ids == out.token_ids and advance_text(initial_state(), out.text) is not None
    lines = max(1, out.text.count("bbox_"))
    print(f"   {'tiny random model':<28} {lines:5d} {len(out.token_ids):6d} {plain_stats.forward_passes / lines:12.1f} "
          f"{stats.forward_passes / lines:14.1f} {1 - stats.forward_passes / plain_stats.forward_passes:8.0%}"
          f"   ({plain_s:.2f} s -> {drafted_s:.2f} s)")
    print("   (the random model writes long garbage class names, which no draft can guess)")
    bench_box_speaker(device, dtype)


def bench_box_speaker(device, dtype):
    """The tiny model after a short fine-tune on box lines (bench/tiny_box_speaker.py): real-shaped output."""
    from n3d_ros.engine.fast_decode import DecodeStats
    from n3d_ros.engine.fast_engine import FastN3DEngine
    from n3d_ros.engine.model import load_engine
    from n3d_ros.engine.protocol.prompts import detection_text
    from tiny_box_speaker import cached_box_speaker

    fast = FastN3DEngine.from_engine(load_engine(str(cached_box_speaker()), device=device, dtype=dtype,
                                                 max_new_tokens=200))
    inputs = tiny_inputs(seed=0)
    fast._turn_mode = "detect"
    fast.run_turn(inputs, detection_text())  # warm-up: image prefix, grammar masks
    runs = {}
    for draft in (False, True):
        fast.draft, fast.stats = draft, DecodeStats()
        start = time.perf_counter()
        out = fast.run_turn(inputs, detection_text())
        runs[draft] = (out, fast.stats, time.perf_counter() - start)
    fast._turn_mode = None
    (plain, plain_stats, plain_s), (out, stats, drafted_s) = runs[False], runs[True]
    assert plain.token_ids == out.token_ids
    lines = max(1, out.text.count(")\n") + out.text.endswith(")"))
    print(f"   {'tiny model taught the grammar':<28} {lines:5d} {len(out.token_ids):6d} "
          f"{plain_stats.forward_passes / lines:12.1f} {stats.forward_passes / lines:14.1f} "
          f"{1 - stats.forward_passes / plain_stats.forward_passes:8.0%}   ({plain_s:.2f} s -> {drafted_s:.2f} s)")
    print("   (CPU time can rise with drafting: a wider forward costs more here; on a GPU decode is bound by\n"
          "    reading the weights, so a pass over a few tokens costs about the same as over one)")


def print_ceilings():
    # tokens/s = memory bandwidth / bytes read per token (perf notes): 7B at bf16 ~14.1 GB, 4-bit ~4.2 GB
    gpus = (("Jetson AGX Orin", 204.8), ("Jetson Orin NX 16GB", 102.4), ("RTX 4090", 1008), ("H100 SXM", 3350))
    print("\n3. Decode ceiling of the 7B model (bandwidth / weights per token; HF reaches ~28%)")
    print(f"   {'GPU':<22} {'GB/s':>6} {'bf16 tok/s':>10} {'4-bit tok/s':>11} {'1 box line bf16 s':>18}")
    for name, bandwidth in gpus:
        bf16, q4 = bandwidth / 14.1, bandwidth / 4.2
        print(f"   {name:<22} {bandwidth:6.0f} {bf16:10.1f} {q4:11.1f} {35 / bf16:18.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    if args.model is None:
        from n3d_ros.engine.tiny import cached_tiny_checkpoint

        args.model = str(cached_tiny_checkpoint())
    bench_prefix_cache(args.model, args.device, args.dtype, args.repeats)
    bench_drafting(args.model, args.device, args.dtype)
    print_ceilings()
    return 0


if __name__ == "__main__":
    sys.exit(main())
