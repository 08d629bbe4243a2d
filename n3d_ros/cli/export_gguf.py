"""`n3d export-gguf`: the language model of a checkpoint as a GGUF file for the llama.cpp runtime.

Run once after downloading the weights; the vision tower (with the 3D encoding) stays in torch and is read
from the checkpoint as before. Then set ``runtime: llamacpp`` and ``gguf: FILE`` on the n3d backend.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    from ..engine.runtimes.gguf_export import QUANTS

    parser = subparsers.add_parser(
        "export-gguf", help="write the language model of a Qwen2.5-VL / N3D-VLM checkpoint as GGUF (llama.cpp)")
    parser.add_argument("--model", required=True, help="checkpoint directory (config.json, safetensors, tokenizer.json)")
    parser.add_argument("--out", required=True, help="GGUF file to write, e.g. ~/models/N3D-VLM/n3d-lm-q4_k_m.gguf")
    parser.add_argument("--quant", default="q4_k_m", choices=QUANTS,
                        help="f32 (exact), f16, q8_0 or q4_k_m (default; ~4.5 GB for 7B; q8_0/q4_k_m need llama-cpp-python)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..engine.runtimes.gguf_export import export_gguf

    start = time.perf_counter()
    out = export_gguf(args.model, args.out, args.quant)
    size = Path(out).stat().st_size
    print(f"wrote {out} ({size / 2**20:.1f} MiB, {args.quant}) in {time.perf_counter() - start:.1f} s; "
          f"use it with runtime=llamacpp gguf={out}", file=sys.stderr)
    return 0
