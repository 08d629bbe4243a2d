#!/usr/bin/env python3
"""Speed of HiSpatial-3B next to N3D-VLM (7B) on this machine, random weights of the real shapes, same run.

For each model: image encoding, time to first token (prefill), decode tokens/s, and the latency of one
question answered with --new-tokens tokens on a new frame (640x480 RGB-D). HiSpatial encodes the frame once
(SigLIP + depth encoder + projector) and then needs one prompt per question; N3D-VLM runs its vision tower in
every prefill and needs two turns per question (boxes, then reasoning), so its per-question line counts two
turns of --new-tokens each.

Shapes (hispatial-spec 4.1; Qwen2.5-VL-7B): HiSpatial = SigLIP-So400m/14 at 448 (27 x 1152) + Gemma2-2B
(26 x 2304, vocab 257216); N3D = Qwen2.5-VL vision (32 x 1280) + Qwen2 text (28 x 3584, vocab 152064).

--text-layers full builds the real depth (use it on a GPU: the same script, unchanged). On a small CPU the
full shapes do not fit (fp32 3B = 12 GB, 7B = 33 GB; bf16 GEMMs are emulated without AVX512-BF16), so the
default there measures the real widths at two depths (HiSpatial 1 and 4 text layers; N3D 1 and 3 text layers,
1 and 4 vision blocks), each in a fresh process, and extrapolates linearly to the real depth: every layer of
one model costs the same, so t(L) = t(a) + (t(b) - t(a)) / (b - a) * (L - a). N3D's lm_head is tied to its embedding to fit memory (same FLOPs and
bytes per token); its 4 full-attention vision blocks are extrapolated at the cost of the windowed ones
(attention is ~1/4 of a block's FLOPs at 1564 patches). Printed: medians and minima over --repeats (this
machine is shared: the extrapolation uses the minimum, the least disturbed run), the measured points, and the
peak RSS of each process.

Usage: python bench/bench_hispatial.py [--device cpu|cuda] [--dtype float32|bfloat16] [--text-layers 1,2|full]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import resource
import statistics
import time

HISPATIAL_TEXT_LAYERS, HISPATIAL_VISION_LAYERS = 26, 27
N3D_TEXT_LAYERS, N3D_VISION_BLOCKS = 28, 32
QUESTION = "How far is the red mug from the laptop?"


def _frame():
    import numpy as np

    from n3d_ros.core.types import PinholeCamera, RGBDFrame

    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:480, 0:640]
    return RGBDFrame(color=rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
                     depth=(0.6 + 0.002 * rows + 0.0005 * cols).astype(np.float32),
                     camera=PinholeCamera(width=640, height=480, fx=615.0, fy=615.0, cx=319.5, cy=239.5))


def _random_init(model, seed=0):
    """Small normal weights everywhere (no uninitialised memory: denormals and NaNs distort CPU timings)."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02)


def _timed(fn, device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def _peak_gib():
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB (Linux)
    gpu = torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else 0.0
    return rss, gpu


def _build(factory, config, dtype, device):
    import torch
    from transformers.initialization import no_init_weights

    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device), no_init_weights():  # weights are written once, by _random_init
            model = factory(config)
    finally:
        torch.set_default_dtype(previous)
    model.tie_weights()  # HiSpatial's lm_head is its embedding (and N3D's here, to fit): one copy in memory
    _random_init(model)
    return model.eval()


# ------------------------------------------------------------------ HiSpatial
def hispatial_config(text_layers, image_token_id):
    from transformers import PaliGemmaConfig

    return PaliGemmaConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
                       "num_hidden_layers": HISPATIAL_VISION_LAYERS, "num_attention_heads": 16, "patch_size": 14,
                       "image_size": 448, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6,
                       "vision_use_head": False},
        text_config={"model_type": "gemma2", "vocab_size": 257216, "hidden_size": 2304, "intermediate_size": 9216,
                     "num_hidden_layers": text_layers, "num_attention_heads": 8, "num_key_value_heads": 4,
                     "head_dim": 256, "query_pre_attn_scalar": 256, "hidden_activation": "gelu_pytorch_tanh",
                     "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "sliding_window": 4096,
                     "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "pad_token_id": 0, "eos_token_id": [1],
                     "bos_token_id": 2},
        # the real <image> row is 257152; the offline tokenizer's id is used instead (same shapes and cost)
        image_token_index=image_token_id, projection_dim=2304, bos_token_id=2, eos_token_id=1, pad_token_id=0)


def _stats(values):
    return {"median": statistics.median(values), "min": min(values)}


def measure_hispatial(text_layers, device, dtype, new_tokens, repeats, time_image=True):
    import torch

    from n3d_ros.hispatial.model import FrameFeatures, HiSpatialEngine, build_network
    from n3d_ros.hispatial.pointmap import build_xyz_inputs
    from n3d_ros.hispatial.tiny import PREPROCESSOR_CONFIG
    from n3d_ros.hispatial.tokenizer import IMAGE_TOKEN, build_test_tokenizer
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tokenizer = build_test_tokenizer()
    config = hispatial_config(text_layers, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    network = _build(build_network, config, dtype, device)
    processor = SiglipImageProcessorPil(**{k: v for k, v in PREPROCESSOR_CONFIG.items() if k != "processor_class"})
    engine = HiSpatialEngine(network, tokenizer, processor, max_new_tokens=new_tokens)
    image = []
    if time_image:  # first call included: on a robot every frame is new, and the encode dwarfs warm-up costs
        inputs = build_xyz_inputs(_frame())
        timed = [_timed(lambda: engine.encode_frame(inputs), device) for _ in range(repeats)]
        image, features = [t for t, _ in timed], timed[-1][1]
    else:  # the text side does not care what the 1024 image embeddings hold: skip the ~1 TFLOP encode
        generator = torch.Generator(device=device).manual_seed(0)
        features = FrameFeatures(0.02 * torch.randn(1, 1024, 2304, generator=generator, device=device,
                                                    dtype=getattr(torch, dtype)), 0.0)
    engine.ask(features, QUESTION, max_new_tokens=2)  # warm-up
    first = [_timed(lambda: engine.ask(features, QUESTION, max_new_tokens=1), device)[0] for _ in range(repeats)]
    runs = [_timed(lambda: engine.ask(features, QUESTION, max_new_tokens=new_tokens), device) for _ in range(repeats)]
    rss, gpu = _peak_gib()
    return {"image_s": _stats(image) if image else None, "first_token_s": _stats(first),
            "answer_s": _stats([t for t, _ in runs]), "generated": min(len(out.token_ids) for _, out in runs),
            "prompt_tokens": len(runs[0][1].prompt), "rss_gib": rss, "gpu_gib": gpu}


# ------------------------------------------------------------------ N3D-VLM
def n3d_config(text_layers, vision_blocks, tie):
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                     "num_hidden_layers": text_layers, "num_attention_heads": 28, "num_key_value_heads": 4,
                     "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                         "mrope_section": [16, 24, 24]},
                     "bos_token_id": 151643, "eos_token_id": 151645, "tie_word_embeddings": tie},
        vision_config={"depth": vision_blocks, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, "window_size": 112,
                       "fullatt_block_indexes": [i for i in (7, 15, 23, 31) if i < vision_blocks],
                       "hidden_act": "silu"},
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=tie)


def measure_n3d(text_layers, vision_blocks, device, dtype, new_tokens, repeats, tie):
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from n3d_ros.core.pointmap import build_point_map
    from n3d_ros.engine.model import N3DEngine
    from n3d_ros.engine.protocol.prompts import grounding_text
    from n3d_ros.engine.tiny import PREPROCESSOR_CONFIG
    from n3d_ros.engine.protocol.tokenizer import offline_qwen_tokenizer

    model = _build(Qwen2_5_VLForConditionalGeneration, n3d_config(text_layers, vision_blocks, tie), dtype, device)
    processor = Qwen2VLImageProcessorPil(**{k: v for k, v in PREPROCESSOR_CONFIG.items()
                                            if k != "image_processor_type"})
    engine = N3DEngine(model, offline_qwen_tokenizer(), processor, max_new_tokens=new_tokens)
    inputs = build_point_map(_frame())
    vision = engine.encode_image(inputs)
    text = grounding_text("red mug")

    def turn(tokens):
        engine.generation_config.max_new_tokens = tokens
        return engine.run_turn(inputs, text, vision)

    turn(2)  # warm-up
    first = [_timed(lambda: turn(1), device)[0] for _ in range(repeats)]
    runs = [_timed(lambda: turn(new_tokens), device) for _ in range(repeats)]
    rss, gpu = _peak_gib()
    return {"image_s": None, "first_token_s": _stats(first),  # the vision tower runs inside prefill
            "answer_s": _stats([t for t, _ in runs]),
            "generated": min(len(out.token_ids) for _, out in runs), "prompt_tokens": runs[0][1].prompt_tokens,
            "rss_gib": rss, "gpu_gib": gpu}


# ------------------------------------------------------------------ driver
def _in_fresh_process(fn, *args):
    """Each shape in its own process: memory is returned between shapes and the peak RSS is per shape."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _per_token(m, stat="min"):
    return (m["answer_s"][stat] - m["first_token_s"][stat]) / max(m["generated"] - 1, 1)


def _at_depth(points, depth):
    """Linear in depth through two (depth, value) points."""
    (a, ta), (b, tb) = points
    return ta + (tb - ta) / (b - a) * (depth - a)


def _row(name, image, first, per_token, turns, new_tokens):
    question = image + turns * (first + per_token * (new_tokens - 1))
    print(f"  {name:<34} {image:>8.2f} {first:>10.2f} {1.0 / per_token:>10.2f} {question:>11.2f}")
    return question


def decode_bytes(dtype_bytes):
    """Weights read per decoded token (all text layers + the output head), from the real configs: on a
    memory-bound device this ratio is the decode speed ratio."""
    def layer(h, q, kv, ff):
        return h * q + 2 * h * kv + q * h + 3 * h * ff
    hispatial = HISPATIAL_TEXT_LAYERS * layer(2304, 8 * 256, 4 * 256, 9216) + 257216 * 2304
    n3d = N3D_TEXT_LAYERS * layer(3584, 3584, 4 * 128, 18944) + 152064 * 3584
    return hispatial * dtype_bytes / 1e9, n3d * dtype_bytes / 1e9


HS_DEPTHS, N3D_SHAPES = (1, 4), ((1, 1), (3, 1), (1, 4))  # (text layers, vision blocks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    parser.add_argument("--text-layers", default=None, help="'full' (CUDA default) or 'extrapolate' (CPU default)")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-n3d", action="store_true")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    dtype = args.dtype or ("bfloat16" if cuda else "float32")
    full = (args.text_layers or ("full" if cuda else "extrapolate")) == "full"
    common = (args.device, dtype, args.new_tokens, args.repeats)
    print(f"HiSpatial-3B vs N3D-VLM-7B, random weights, {args.device} {dtype}, 640x480 frame, "
          f"{args.new_tokens} new tokens per prompt, {args.repeats} repeats")
    if full:
        points = {"hispatial": [(HISPATIAL_TEXT_LAYERS, None, _in_fresh_process(measure_hispatial,
                                                                               HISPATIAL_TEXT_LAYERS, *common))]}
        if not args.skip_n3d:
            points["n3d"] = [(N3D_TEXT_LAYERS, N3D_VISION_BLOCKS, _in_fresh_process(
                measure_n3d, N3D_TEXT_LAYERS, N3D_VISION_BLOCKS, *common, False))]
    else:
        points = {"hispatial": [(k, None, _in_fresh_process(measure_hispatial, k, *common, k == HS_DEPTHS[0]))
                                for k in HS_DEPTHS]}
        if not args.skip_n3d:
            points["n3d"] = [(t, v, _in_fresh_process(measure_n3d, t, v, *common, True)) for t, v in N3D_SHAPES]
    print("\nmeasured shapes (seconds, median / min; N3D's first token includes its vision tower):")
    for name, rows in points.items():
        for text_layers, blocks, m in rows:
            image = f"image {m['image_s']['median']:6.2f} / {m['image_s']['min']:6.2f}  " if m["image_s"] else ""
            shape = f"{text_layers} text layers" + (f", {blocks} vision blocks" if blocks else "")
            print(f"  {name:<10} {shape:<30} {image}first token {m['first_token_s']['median']:6.2f} / "
                  f"{m['first_token_s']['min']:6.2f}  {m['generated']} tokens {m['answer_s']['median']:6.2f} / "
                  f"{m['answer_s']['min']:6.2f}  prompt {m['prompt_tokens']}  peak RSS {m['rss_gib']:.1f} GiB"
                  + (f", GPU {m['gpu_gib']:.1f} GiB" if cuda else ""))
    label = "real shape" + ("" if full else " (extrapolated, minima)")
    print(f"\n  {label:<34} {'image s':>8} {'prefill s':>10} {'decode t/s':>10} {'question s':>11}")
    hs = points["hispatial"]
    image = hs[0][2]["image_s"]["min"]
    if full:
        hs_row = (image, hs[0][2]["first_token_s"]["min"], _per_token(hs[0][2]))
    else:
        hs_row = (image, _at_depth([(k, m["first_token_s"]["min"]) for k, _, m in hs], HISPATIAL_TEXT_LAYERS),
                  _at_depth([(k, _per_token(m)) for k, _, m in hs], HISPATIAL_TEXT_LAYERS))
    hs_question = _row("HiSpatial-3B (1 prompt)", *hs_row, 1, args.new_tokens)
    if "n3d" in points:
        n3d = points["n3d"]
        if full:
            n3d_row = (0.0, n3d[0][2]["first_token_s"]["min"], _per_token(n3d[0][2]))
        else:
            (_, _, base), (t2, _, text), (_, v2, vision) = n3d
            first = [m["first_token_s"]["min"] for m in (base, text, vision)]
            prefill = (first[0] + (first[1] - first[0]) / (t2 - 1) * (N3D_TEXT_LAYERS - 1)
                       + (first[2] - first[0]) / (v2 - 1) * (N3D_VISION_BLOCKS - 1))
            per_token = _at_depth([(1, _per_token(base)), (t2, _per_token(text))], N3D_TEXT_LAYERS)
            n3d_row = (0.0, prefill, per_token)
        n3d_question = _row("N3D-VLM-7B (2 turns)", *n3d_row, 2, args.new_tokens)
        print(f"\n  per question HiSpatial takes {hs_question / n3d_question:.2f}x N3D's time; decode "
              f"{n3d_row[2] / hs_row[2]:.2f}x its tokens/s; prefill {hs_row[1] / n3d_row[1]:.2f}x")
    hs_gb, n3d_gb = decode_bytes(2 if dtype in ("bfloat16", "float16") else 4)
    print(f"  weights read per decoded token ({dtype}): HiSpatial {hs_gb:.1f} GB, N3D {n3d_gb:.1f} GB "
          f"({n3d_gb / hs_gb:.2f}x): the decode ratio of a memory-bound device")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
