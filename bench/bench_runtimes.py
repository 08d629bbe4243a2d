#!/usr/bin/env python3
"""Language-model runtimes under the N3D engine, in one run: transformers fp32/bf16 vs llama.cpp f16/q8_0/q4_k_m.

A random-weight Qwen2.5-VL whose language model has a real shape (0.5b: Qwen2.5-0.5B's, hidden 896, 24 layers,
14 heads, 2 KV heads; 1.5b: Qwen2.5-1.5B's, hidden 1536, 28 layers, where every row fits llama.cpp's 256-wide
k-quant blocks as on the 7B; 7b: Qwen2.5-VL-7B's published config) so that reading the weights, not Python,
sets the decode speed. Each GGUF's storage types are printed: a k-quant export of a shape whose rows are not
multiples of 256 is stored in llama.cpp's fallback types, and is then not the q4_k_m the 7B gets.
For each runtime it prints medians of:
  * TTFT: detection prompt on a new 640x480 frame (vision stage + prefill + first token), and the vision stage
    alone (the same torch code for every runtime);
  * decode tok/s: single-token greedy steps after the prefix;
  * ms per box line: drafted, grammar-constrained detection whose answer is the spec's two test-vector lines
    (a random model writes none: each real forward pass has its logits scripted, see ScriptedRuntime), and 35
    plain decode steps (a typical line);
  * each decode rate as a fraction of the memory-bandwidth ceiling, bandwidth / weight bytes read per token,
    with the bandwidth measured in this run (a large read-only reduction on every core, fastest of several).
--bins: per-field bin agreement of box lines of q8_0 / q4_k_m exports against f32, on the tiny model taught the
box grammar (bench/tiny_box_speaker.py).

Usage: python bench/bench_runtimes.py [--shape 0.5b|1.5b|7b] [--device cpu|cuda] [--runtimes a,b] [--bins]
Runs offline (random weights from a config; tokenizer from engine.protocol.tokenizer). On CUDA the transformers runtime
always runs; llama.cpp runs where llama-cpp-python is installed (built with -DGGML_CUDA=on to use the GPU).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_speed import tiny_inputs  # noqa: E402  (the tests' synthetic frame)

ALL_RUNTIMES = ("transformers-fp32", "transformers-bf16", "llamacpp-f16", "llamacpp-q8_0", "llamacpp-q4_k_m")
BOX_LINE_TOKENS = 35  # a typical `bbox_k=Bbox(class,U,V,Z,A,SX,SY,SZ)` line (README: perf notes)
FIELDS = ("U", "V", "Z", "A", "SX", "SY", "SZ")

SHAPES = {
    "0.5b": {"text": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                      "num_attention_heads": 14, "num_key_value_heads": 2, "tie_word_embeddings": True,
                      "mrope_section": [8, 12, 12]},  # head dim 64: sections sum to 32
             # a small vision tower: this benchmark is about the language model (vision width stays 1280)
             "vision": {"depth": 2, "intermediate_size": 256, "fullatt_block_indexes": [1]}},
    # Qwen2.5-1.5B's: the smallest Qwen2.5 whose every weight row is a multiple of 256, so that q4_k_m is the
    # q4_K/q6_K mix it is on the 7B (at 0.5b's hidden 896 llama.cpp stores most of it as q5_0 and q8_0)
    "1.5b": {"text": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                      "num_attention_heads": 12, "num_key_value_heads": 2, "tie_word_embeddings": True,
                      "mrope_section": [16, 24, 24]},  # head dim 128, as the 7B
             "vision": {"depth": 2, "intermediate_size": 256, "fullatt_block_indexes": [1]}},
    "7b": {"text": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                    "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False,
                    "mrope_section": [16, 24, 24]},
           "vision": {"depth": 32, "intermediate_size": 3420, "fullatt_block_indexes": [7, 15, 23, 31]}},
}


def median(values):
    return statistics.median(values)


def sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------- model
def bench_config(shape: str, layers: int = 0):
    """The shape's config; layers > 0 keeps that many language-model layers (a smoke run of a large shape)."""
    from transformers import Qwen2_5_VLConfig

    spec = SHAPES[shape]
    text = spec["text"]
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 152064, "hidden_size": text["hidden_size"], "intermediate_size": text["intermediate_size"],
            "num_hidden_layers": layers or text["num_hidden_layers"], "num_attention_heads": text["num_attention_heads"],
            "num_key_value_heads": text["num_key_value_heads"], "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                                      "mrope_section": text["mrope_section"]},
            "bos_token_id": 151643, "eos_token_id": 151645, "tie_word_embeddings": text["tie_word_embeddings"],
        },
        vision_config={
            "depth": spec["vision"]["depth"], "hidden_size": 1280, "intermediate_size": spec["vision"]["intermediate_size"],
            "num_heads": 16, "out_hidden_size": text["hidden_size"], "patch_size": 14, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": spec["vision"]["fullatt_block_indexes"],
            "hidden_act": "silu",
        },
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=text["tie_word_embeddings"],
    )


def random_checkpoint(shape: str, device: str, save: bool, layers: int = 0):
    """(model fp32 on device, checkpoint dir or None). The directory is what export-gguf reads."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from n3d_ros.engine.tiny import GENERATION_CONFIG, PREPROCESSOR_CONFIG
    from n3d_ros.engine.protocol.tokenizer import cache_root, offline_qwen_tokenizer

    torch.manual_seed(0)
    dtype = torch.float32 if shape == "0.5b" else torch.bfloat16  # larger shapes: half the disk and memory
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(bench_config(shape, layers), dtype=dtype).eval()
    directory = None
    if save:
        directory = cache_root() / (f"bench_qwen2_5_vl_{shape}" + (f"_{layers}layers" if layers else ""))
        if not (directory / "generation_config.json").is_file():
            model.save_pretrained(str(directory))
            offline_qwen_tokenizer().save_pretrained(str(directory))
            (directory / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
            (directory / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
        else:  # the same seed wrote it: load those weights so every runtime runs the same model
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(directory), dtype=dtype).to(device).eval()
    return model, directory


# ---------------------------------------------------------------- bandwidth
def read_bandwidth(device: str, gib: float = 1.0, repeats: int = 7) -> float:
    """Bytes/s of a read-only reduction over a buffer much larger than the caches (what decode does).

    On a CPU it runs on every core, whatever --threads the runtimes get: the ceiling is the memory system's,
    and one core's reduction is bound by its own load and add throughput, not by DRAM (measured here: a
    one-thread probe read 2.9 GB/s while llama.cpp on one thread moved more than that)."""
    import torch

    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or threads)
    try:
        n = int(gib * 2**30 // 4)
        buf = torch.ones(n, dtype=torch.float32, device=device)
        buf.sum()  # warm-up
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            buf.sum()
            sync(device)
            times.append(time.perf_counter() - start)
        del buf
    finally:
        torch.set_num_threads(threads)
    return n * 4 / min(times)  # the ceiling: the fastest pass (slower ones met other load on the machine)


def weight_bytes_torch(model, dtype_bytes: int) -> int:
    """Weights read per decode token: the language model and the output layer (not the embedding gather)."""
    text = model.config.get_text_config()
    lm = sum(p.numel() for p in model.model.language_model.parameters())
    embed = model.model.language_model.embed_tokens.weight.numel()
    head = embed if text.tie_word_embeddings else model.lm_head.weight.numel()
    return (lm - embed + head) * dtype_bytes


def weight_bytes_gguf(path) -> int:
    import gguf

    reader = gguf.GGUFReader(str(path))
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    if "output.weight" in sizes:  # untied: token_embd is only gathered, one row per token
        return sum(sizes.values()) - sizes["token_embd.weight"]
    return sum(sizes.values())  # tied: token_embd is the output layer, read whole


def storage_mix(path) -> str:
    """The ggml storage types of a GGUF's weights, as shares of its bytes ("Q4_K 71%, Q6_K 29%")."""
    import gguf

    by_type = {}
    for tensor in gguf.GGUFReader(str(path)).tensors:
        if len(tensor.shape) < 2:
            continue  # norms and biases: float32 in every export
        by_type[tensor.tensor_type.name] = by_type.get(tensor.tensor_type.name, 0) + int(tensor.n_bytes)
    total = sum(by_type.values())
    return ", ".join(f"{name} {n / total:.0%}" for name, n in sorted(by_type.items(), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------- scripted box lines
# The spec's test-vector outputs (n3d-vlm-spec.md, test vectors): two box lines as the real model writes them.
SCRIPT_TEXT = ("bbox_0=Bbox(person,519,587,394,500,278,254,199)\n"
               "bbox_1=Bbox(orange/tangerine,720,858,73,500,161,53,84)")


def scripted_runtime_class():
    from n3d_ros.engine.runtimes.base import LanguageRuntime

    class ScriptedRuntime(LanguageRuntime):
        """The real runtime with its full cost, but its logits replaced so that the answer is ``script``.

        A random-weight model writes no box lines, so the drafted, constrained decoder would not show what a
        line costs. Wrapped in this, every forward pass still runs the real weights over the same tokens, and
        each row is then made to peak at the script's next token (at EOS after it): the decoder, its grammar
        and its drafter run unchanged and pay the passes that the real model's lines need.
        """

        name = "scripted"

        def __init__(self, inner, script, eos_id):
            self.inner, self.script, self.eos_id = inner, list(script), int(eos_id)
            self.answer_start = None  # index of the first answer token in the working sequence

        vocab_size = property(lambda self: self.inner.vocab_size)
        hidden_size = property(lambda self: self.inner.hidden_size)

        def prefill(self, key, ids, image_embeds, positions, stats):
            return self.inner.prefill(key, ids, image_embeds, positions, stats)

        def restore(self, prefix):
            self.inner.restore(prefix)

        def truncate(self, length):
            self.inner.truncate(length)

        def length(self):
            return self.inner.length()

        def forward(self, ids, last_only=False):
            import torch

            before = self.inner.length()
            logits = self.inner.forward(ids, last_only=last_only)
            scripted = torch.zeros_like(logits)
            first = len(ids) - logits.shape[0]  # the id of the first row returned (last_only: the last id)
            for row in range(logits.shape[0]):
                index = before + first + row + 1 - self.answer_start  # the answer token this row predicts
                if index < 0:
                    scripted[row] = logits[row]
                else:
                    scripted[row, self.script[index] if index < len(self.script) else self.eos_id] = 100.0
            return scripted

    return ScriptedRuntime


def scripted_line_ms(engine, inputs, vision, repeats, guesses):
    """Median ms per box line of constrained detection whose answer is SCRIPT_TEXT (prefix cached): not drafted
    (guesses None), or drafted with the drafter's guesses on (True) or off (False); fast_engine.wide_pass_cost
    picks one of the last two at the first frame."""
    from n3d_ros.engine.fast_decode import count_box_lines
    from n3d_ros.engine.protocol.prompts import detection_text

    script = engine.tokenizer.encode(SCRIPT_TEXT, add_special_tokens=False)
    real = engine.runtime
    wrapped = scripted_runtime_class()(real, script, engine.eos_ids[0])
    wrapped.answer_start = len(engine.build_inputs(inputs, detection_text(), vision).prompt.ids)
    chosen = engine.draft_guesses
    engine.runtime, engine.draft, engine.draft_guesses = wrapped, guesses is not None, bool(guesses)
    try:
        times, passes = [], []
        for _ in range(repeats + 1):  # the first one fills the prefix cache
            before = engine.stats.forward_passes
            start = time.perf_counter()
            grounding = engine.detect(inputs, vision)
            times.append(time.perf_counter() - start)
            passes.append(engine.stats.forward_passes - before)
            if grounding.turn.text.strip() != SCRIPT_TEXT:
                raise RuntimeError(f"scripted detection wrote {grounding.turn.text!r}, not the script")
    finally:
        engine.runtime, engine.draft, engine.draft_guesses = real, True, chosen
    lines = count_box_lines(SCRIPT_TEXT)
    return 1000 * median(times[1:]) / lines, median(passes[1:]) / lines, len(script) / lines


# ---------------------------------------------------------------- one runtime
def make_engine(model, runtime, max_new_tokens=160):
    from transformers import AutoTokenizer, GenerationConfig
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from n3d_ros.engine.fast_engine import FastN3DEngine
    from n3d_ros.engine.tiny import GENERATION_CONFIG, cached_tiny_checkpoint

    source = str(cached_tiny_checkpoint())  # same tokenizer and processor files as every Qwen2.5-VL
    tokenizer = AutoTokenizer.from_pretrained(source)
    processor = Qwen2VLImageProcessorPil.from_pretrained(source)
    model.generation_config = GenerationConfig(**GENERATION_CONFIG)
    return FastN3DEngine(model, tokenizer, processor, max_new_tokens=max_new_tokens, runtime=runtime, source=source)


def measure(engine, device, decode_tokens, repeats):
    import torch

    from n3d_ros.engine.protocol.prompts import detection_text
    from n3d_ros.engine.vision.stage import image_embeddings

    inputs = tiny_inputs(h=480)
    vision = engine.encode_image(inputs)
    runtime = engine.runtime
    engine.detect(inputs, vision)  # warm-up: kernels, allocator, grammar tables
    vision_s, ttft_s = [], []
    for _ in range(repeats):
        engine.prefix_cache.clear()
        turn = engine.build_inputs(inputs, detection_text(), vision)
        sync(device)
        start = time.perf_counter()
        image_embeddings(engine.model, engine.hook, turn.model_kwargs["pixel_values"],
                         turn.model_kwargs["image_grid_thw"], turn.points, turn.map_hw, turn.grid_hw)
        sync(device)
        vision_s.append(time.perf_counter() - start)
        turn.frame_ref = inputs
        start = time.perf_counter()
        prefix, end = engine._prefix_for(turn)
        logits = runtime.forward(turn.prompt.ids[end:])
        int(torch.argmax(logits[-1]))
        sync(device)
        ttft_s.append(time.perf_counter() - start)
    # decode: single-token steps, each fed the previous argmax (EOS is fed like any token: fixed length)
    steps = []
    for _ in range(max(1, repeats // 2)):
        runtime.restore(prefix)
        token = int(torch.argmax(runtime.forward(turn.prompt.ids[end:])[-1]))
        for _ in range(decode_tokens):
            start = time.perf_counter()
            token = int(torch.argmax(runtime.forward([token])[-1]))
            sync(device)
            steps.append(time.perf_counter() - start)
    runtime.restore(prefix)
    step = median(steps)
    result = {"vision_s": median(vision_s), "ttft_s": median(ttft_s), "tok_s": 1 / step,
              "plain_line_ms": 1000 * step * BOX_LINE_TOKENS}
    result["wide_ratio"], result["auto_guesses"] = engine.wide_pass_ratio, engine.draft_guesses
    for guesses in (None, True, False):
        ms, passes, tokens = scripted_line_ms(engine, inputs, vision, repeats, guesses)
        result["line_ms", guesses], result["line_passes", guesses], result["script_tokens_per_line"] = ms, passes, tokens
    return result


def build_runtime(name, model, directory, args, gguf_dir):
    """(runtime, engine, weight bytes per token, the torch model) for one runtime name."""
    import torch

    from n3d_ros.engine.runtimes.transformers_rt import TransformersRuntime

    kind, variant = name.split("-", 1)
    if kind == "transformers":
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[variant]
        copy = model.to(dtype)  # in place: bf16 runs last (see main), as load_engine(dtype=...) would load it
        runtime = TransformersRuntime(copy)
        engine = make_engine(copy, runtime, args.max_new_tokens)
        nbytes = weight_bytes_torch(copy, 4 if dtype == torch.float32 else 2)
    else:
        from n3d_ros.engine.runtimes.gguf_export import export_gguf
        from n3d_ros.engine.runtimes.llamacpp_rt import LlamaCppRuntime

        path = gguf_dir / f"{directory.name}-{variant}.gguf"
        if not path.is_file():
            start = time.perf_counter()
            export_gguf(directory, path, variant)
            print(f"   exported {path.name} in {time.perf_counter() - start:.0f} s", flush=True)
        copy = model
        runtime = LlamaCppRuntime(path, image_token_id=151655, n_ctx=2048, n_threads=args.threads or None)
        engine = make_engine(copy, runtime, args.max_new_tokens)
        nbytes = weight_bytes_gguf(path)
        print(f"   {path.name}: stored as {storage_mix(path)}", flush=True)
    return runtime, engine, nbytes, copy


def run_runtime(name, model, directory, device, args, gguf_dir):
    runtime, engine, nbytes, copy = build_runtime(name, model, directory, args, gguf_dir)
    try:
        result = measure(engine, device, args.decode_tokens, args.repeats)
    finally:
        engine.prefix_cache.clear()
        engine.hook.remove()
        runtime.close()
    result["bytes"] = nbytes
    return result, copy


# ---------------------------------------------------------------- interleaved decode
def interleaved_decode(model, directory, device, args, gguf_dir, names, rounds: int, steps: int):
    """Decode tok/s of several runtimes held at once and timed in alternation (``steps`` tokens each per round).

    On a shared machine the speed drifts by a third within minutes; runtimes measured one after the other
    then compare different minutes. Alternating puts each in every minute, so their ratio holds still."""
    import torch

    from n3d_ros.engine.protocol.prompts import detection_text

    if sum(n.startswith("transformers") for n in names) > 1:
        raise SystemExit("--interleave takes at most one transformers runtime (they would share one torch model)")
    inputs = tiny_inputs(h=480)
    held = {}
    for name in names:  # the transformers runtime last: it converts the shared torch model in place
        runtime, engine, nbytes, model = build_runtime(name, model, directory, args, gguf_dir)
        vision = engine.encode_image(inputs)
        turn = engine.build_inputs(inputs, detection_text(), vision)
        prefix, end = engine._prefix_for(turn)
        engine.hook.remove()  # decode needs no vision stage, and the next engine hooks the same tower
        held[name] = {"runtime": runtime, "engine": engine, "bytes": nbytes, "prefix": prefix,
                      "suffix": turn.prompt.ids[end:], "rates": []}
    try:
        for _ in range(rounds):
            for name, h in held.items():
                runtime = h["runtime"]
                runtime.restore(h["prefix"])
                token = int(torch.argmax(runtime.forward(h["suffix"], last_only=True)[-1]))
                times = []
                for _ in range(steps):
                    start = time.perf_counter()
                    token = int(torch.argmax(runtime.forward([token])[-1]))
                    sync(device)
                    times.append(time.perf_counter() - start)
                h["rates"].append(1 / median(times))
    finally:
        for h in held.values():
            h["engine"].prefix_cache.clear()
            h["runtime"].close()
    return {name: (h["rates"], h["bytes"]) for name, h in held.items()}


def print_interleaved(results, bandwidth, rounds, steps):
    reference = results.get("transformers-bf16")
    print(f"\n5. Interleaved decode: {rounds} rounds, each runtime {steps} single-token steps per round in turn "
          f"(median step per round; the spread is over rounds). Ceiling uses {bandwidth / 1e9:.1f} GB/s")
    print(f"   {'runtime':>18} {'MB/token':>9} {'tok/s':>7} {'min-max':>12} {'of ceil':>8} {'x bf16':>7} "
          f"{'x bf16 per round (min-max)':>27}")
    for name, (rates, nbytes) in results.items():
        row = f"   {name:>18} {nbytes / 1e6:9.0f} {median(rates):7.1f} {min(rates):5.1f}-{max(rates):<6.1f} " \
              f"{median(rates) * nbytes / bandwidth:8.0%}"
        if reference:
            ratios = [r / b for r, b in zip(rates, reference[0])]
            row += f" {median(ratios):6.2f}x {min(ratios):12.2f}-{max(ratios):.2f}"
        print(row)


# ---------------------------------------------------------------- load memory
_LOAD_PROBE = """
import sys
from n3d_ros.engine.model import load_engine
engine = load_engine(sys.argv[1], device="cpu", dtype=sys.argv[3], language_model=sys.argv[2] == "1")
held = sum(p.numel() * p.element_size() for p in engine.model.parameters())
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked parent, VmHWM starts anew
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(hwm) / 1024, held / 2**20)
"""


def load_peak_mib(directory, language_model: bool, dtype: str):
    """(peak RSS MiB, MiB of weights kept) of load_engine in a fresh process: the whole model or the tower alone."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _LOAD_PROBE, str(directory), "1" if language_model else "0", dtype],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def print_load_memory(directory):
    print("\n4. Loading the checkpoint, fresh process each: peak RSS MiB (MiB of weights kept)")
    stored = json.loads((directory / "config.json").read_text()).get("dtype", "?")
    print(f"   the checkpoint is stored in {stored}: loaded in that dtype its weights stay memory-mapped and are read "
          "lazily; the other dtype converts them, so they are all read, as a move to a GPU reads them")
    for dtype in ("float32", "bfloat16"):
        full, alone = load_peak_mib(directory, True, dtype), load_peak_mib(directory, False, dtype)
        print(f"   {dtype:>8}: with the torch language model {full[0]:6.0f} ({full[1]:.0f}); the vision tower alone, "
              f"as the llama.cpp runtime loads it, {alone[0]:6.0f} ({alone[1]:.0f}): {alone[0] / full[0]:.2f}x")


# ---------------------------------------------------------------- bin agreement
def bin_agreement(frames: int, gguf_dir: Path, threads: int = 0, steps: int = 300, hidden: int = 256):
    from n3d_ros.engine.protocol.box_parser import parse_boxes
    from n3d_ros.engine.model import load_engine
    from n3d_ros.engine.runtimes.gguf_export import export_gguf
    from n3d_ros.engine.runtimes.select import make_runtime
    from n3d_ros.engine.fast_engine import FastN3DEngine
    from tiny_box_speaker import cached_box_speaker

    speaker = cached_box_speaker(steps, hidden)
    boxes, distinct = {}, {}
    for quant in ("f32", "q8_0", "q4_k_m"):
        path = gguf_dir / f"{speaker.name}-{quant}.gguf"
        if not path.is_file():
            export_gguf(speaker, path, quant)
        print(f"   {path.name}: stored as {storage_mix(path)}", flush=True)
        base = load_engine(str(speaker), device="cpu", dtype="float32", max_new_tokens=200)
        engine = FastN3DEngine.from_engine(base, runtime=make_runtime(base, "llamacpp", str(path), n_threads=threads))
        texts = [engine.detect(tiny_inputs(seed=s)).turn.text for s in range(frames)]
        boxes[quant], distinct[quant] = [parse_boxes(t).boxes for t in texts], len(set(texts))
        engine.close()
    print(f"\n3. Bin agreement of box lines against the f32 export (tiny box speaker, hidden {hidden}, trained "
          f"{steps} steps, {frames} frames, greedy)")
    print(f"   {'export':>7} {'lines':>6} {'same class':>10} " + " ".join(f"{f:>9}" for f in FIELDS) + "   (exact / mean |d bin|)")
    for quant in ("q8_0", "q4_k_m"):
        pairs = [(a, b) for fa, fb in zip(boxes["f32"], boxes[quant]) for a, b in zip(fa, fb)]
        total = sum(len(f) for f in boxes["f32"])
        same_class = sum(a.label == b.label for a, b in pairs) / max(1, len(pairs))
        cells = []
        for k in range(7):
            exact = sum(a.bins[k] == b.bins[k] for a, b in pairs) / max(1, len(pairs))
            mean_abs = sum(abs(a.bins[k] - b.bins[k]) for a, b in pairs) / max(1, len(pairs))
            cells.append(f"{exact:4.0%}/{mean_abs:4.1f}")
        print(f"   {quant:>7} {len(pairs):>3}/{total:<3} {same_class:>9.0%} " + " ".join(f"{c:>9}" for c in cells))
    # the speaker was taught random bins, so its greedy answer may not depend on the frame at all: say so
    print("   distinct answers over the frames: " + ", ".join(f"{q} {n} of {frames}" for q, n in distinct.items()))
    if hidden % 256:
        print(f"   (hidden {hidden}: no row is a multiple of 256, so llama.cpp stores q4_k_m's k-quant tensors in its "
              "fallback types)")


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runtimes", default=",".join(ALL_RUNTIMES))
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bins", action="store_true", help="also the q8_0/q4_k_m bin agreement (tiny box speaker)")
    parser.add_argument("--bins-frames", type=int, default=12)
    parser.add_argument("--bins-steps", type=int, default=300, help="training steps of the tiny box speaker")
    parser.add_argument("--bins-hidden", type=int, default=256,
                        help="hidden size of the tiny box speaker (256: every row fits the k-quant blocks, as on the 7B)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--gguf-dir", default="", help="where exports go (default: the cache directory)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch and llama.cpp (default: all). On a machine shared with other "
                             "work use fewer: llama.cpp's threads spin at barriers and crawl when a core is taken")
    parser.add_argument("--layers", type=int, default=0,
                        help="language-model layers to build (default: the shape's); fewer makes a quick smoke run "
                             "of a large shape, and the ceiling fractions stay right (bytes are counted from the model)")
    parser.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                        help="instead of the full measurement: decode tok/s of the named runtimes held at once and "
                             "timed in alternation for ROUNDS rounds (a fair ratio on a machine whose speed drifts)")
    parser.add_argument("--max-new-tokens", type=int, default=120, help="detection length for ms per box line")
    args = parser.parse_args(argv)

    import torch

    from n3d_ros.engine.protocol.tokenizer import cache_root

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.runtimes.split(",") if n]
    unknown = sorted(set(names) - set(ALL_RUNTIMES))
    if unknown:
        parser.error(f"unknown runtimes {unknown}; known: {list(ALL_RUNTIMES)}")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        dropped = [n for n in names if n.startswith("llamacpp")]
        names = [n for n in names if not n.startswith("llamacpp")]
        if dropped:
            print(f"llama-cpp-python is not installed: skipping {dropped}")
    gguf_dir = Path(args.gguf_dir or cache_root() / "gguf")
    gguf_dir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"bench_runtimes: shape {args.shape}, device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, load average {load[0]:.1f}/{load[1]:.1f}")
    if args.interleave:
        names = [n for n in names if not n.startswith("transformers")] + [n for n in names if n.startswith("transformers")]
        bandwidth = read_bandwidth(args.device)
        model, directory = random_checkpoint(args.shape, args.device, save=any(n.startswith("llamacpp") for n in names),
                                             layers=args.layers)
        results = interleaved_decode(model, directory, args.device, args, gguf_dir, names, args.interleave,
                                     args.decode_tokens)
        print_interleaved(results, max(bandwidth, read_bandwidth(args.device)), args.interleave, args.decode_tokens)
        return 0
    if not args.skip_speed:
        bandwidth = [read_bandwidth(args.device)]
        model, directory = random_checkpoint(args.shape, args.device, save=any(n.startswith("llamacpp") for n in names),
                                             layers=args.layers)
        results = {}
        # in the order given: the exports read the saved fp32 checkpoint, and the transformers runs convert the
        # torch model in place (the vision stage then runs in that dtype for the runtimes after it)
        for name in names:
            print(f"   running {name} ...", flush=True)
            results[name], model = run_runtime(name, model, directory, args.device, args, gguf_dir)
            r = results[name]  # printed as it comes: a long run still leaves its numbers
            print(f"   {name}: {r['tok_s']:.2f} tok/s ({r['tok_s'] * r['bytes'] / bandwidth[0]:.0%} of the start "
                  f"bandwidth ceiling), TTFT {r['ttft_s']:.2f} s, vision {r['vision_s']:.2f} s, "
                  f"{r['line_ms', None]:.0f} ms/line undrafted, {r['line_ms', True]:.0f} / {r['line_ms', False]:.0f} "
                  "drafted with / without guesses "
                  f"(auto: {'with' if r['auto_guesses'] else 'without'}, 4-wide pass {r['wide_ratio']:.2f}x), "
                  f"{r['bytes'] / 1e6:.0f} MB/token", flush=True)
            gc.collect()
        bandwidth.append(read_bandwidth(args.device))
        bw = max(bandwidth)  # the ceiling is the most the memory system gave; a slower probe met other load
        probe = f"{os.cpu_count()} CPU threads" if args.device == "cpu" else args.device
        print(f"\n1. Memory bandwidth ({probe}, read-only reduction over 1 GiB, start/end of run): "
              f"{bandwidth[0] / 1e9:.1f} / {bandwidth[1] / 1e9:.1f} GB/s; the ceiling uses the higher, {bw / 1e9:.1f} GB/s")
        layers = f" with {args.layers} of its layers" if args.layers else ""
        print(f"\n2. Decoding, {args.shape} language-model shape{layers}, random weights, 640x480 frame (391 image tokens); "
              f"medians of {args.repeats}")
        print(f"   {'runtime':>18} {'MB/token':>9} {'vision s':>9} {'TTFT s':>7} {'tok/s':>7} {'ceiling':>8} "
              f"{'of ceil':>8} {'x bf16':>7} {'plain':>6} {'undrafted':>12} {'guesses':>12} {'no guesses':>12} {'4-wide':>7} {'auto':>5}")
        reference = results.get("transformers-bf16", {}).get("tok_s")
        for name in [n for n in ALL_RUNTIMES if n in results]:
            r = results[name]
            ceiling = bw / r["bytes"]
            ratio = f"{r['tok_s'] / reference:6.2f}x" if reference else "    n/a"
            print(f"   {name:>18} {r['bytes'] / 1e6:9.0f} {r['vision_s']:9.3f} {r['ttft_s']:7.3f} {r['tok_s']:7.1f} "
                  f"{ceiling:8.1f} {r['tok_s'] / ceiling:8.0%} {ratio:>7} {r['plain_line_ms']:6.0f} "
                  f"{r['line_ms', None]:5.0f} ({r['line_passes', None]:4.1f}) "
                  f"{r['line_ms', True]:5.0f} ({r['line_passes', True]:4.1f}) {r['line_ms', False]:5.0f} "
                  f"({r['line_passes', False]:4.1f}) {r['wide_ratio']:6.2f}x {'with' if r['auto_guesses'] else 'w/o':>5}")
        r = next(iter(results.values()), None)
        if r:
            print(f"   ms per box line: plain = {BOX_LINE_TOKENS} single-token steps; the others are whole constrained "
                  f"detections whose answer is the spec's two test-vector lines ({r['script_tokens_per_line']:.1f} "
                  "tokens per line; in brackets forward passes per line; the logits scripted after each real pass): "
                  "undrafted, drafted with the drafter's guesses, drafted without them; 4-wide = a 4-token pass over "
                  "a 1-token one, from which the engine picks (auto)")
        load = os.getloadavg()
        print(f"   load average at the end: {load[0]:.1f}/{load[1]:.1f} (shared machine: timings are noisy)")
        if directory is not None:
            print_load_memory(directory)
        del model
        gc.collect()
    if args.bins:
        bin_agreement(args.bins_frames, gguf_dir, args.threads, args.bins_steps, args.bins_hidden)
    return 0


if __name__ == "__main__":
    sys.exit(main())
