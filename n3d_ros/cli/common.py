"""Arguments shared by the subcommands that run the pipeline on a frame read from files."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..core.types import InputError, RGBDFrame
from ..pipeline import BACKENDS, DTYPES, GGUF_QUANTS, QUANTIZATIONS, RUNTIMES, SAMPLINGS, Pipeline, PipelineConfig


def add_frame_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("frame (either --scene DIR or --color/--depth/--intrinsics)")
    group.add_argument("--scene", type=Path, help="a directory written by `n3d scene`")
    group.add_argument("--color", type=Path, help="colour image (PNG/JPEG, read as RGB)")
    group.add_argument("--depth", type=Path,
                       help="depth aligned to colour: 16-bit PNG in millimetres, or .npy float metres")
    group.add_argument("--intrinsics", type=Path,
                       help="JSON {width, height, k[9], d, distortion_model, frame_id} (sensor_msgs/CameraInfo "
                            "fields) or {width, height, fx, fy, cx, cy}")


def add_pipeline_args(parser: argparse.ArgumentParser, default_backend: str = "n3d") -> None:
    group = parser.add_argument_group("pipeline")
    group.add_argument("--backend", choices=BACKENDS, default=default_backend)
    group.add_argument("--model", default=PipelineConfig.model, help="hub id or local checkpoint directory")
    group.add_argument("--device", default="auto")
    group.add_argument("--dtype", choices=DTYPES, default=PipelineConfig.dtype)
    group.add_argument("--quantization", choices=QUANTIZATIONS, default="")
    group.add_argument("--sampling", choices=SAMPLINGS, default="greedy")
    group.add_argument("--max-new-tokens", type=int, default=PipelineConfig.max_new_tokens)
    group.add_argument("--refine", action="store_true", help="refit boxes to the measured depth")
    group.add_argument("--no-prefix-cache", action="store_true",
                       help="n3d: prefill the image for every turn (slower; answers are the same)")
    group.add_argument("--no-constrained-decoding", action="store_true",
                       help="n3d: plain decoding of box lines (slower; valid greedy answers are the same)")
    group.add_argument("--single-object-stop", action="store_true",
                       help="n3d: stop grounding after the first box (when exactly one object is wanted)")
    group.add_argument("--allow-download", action="store_true",
                       help="n3d: fetch a hub id that is not in the local cache (default: cache only)")
    group.add_argument("--runtime", choices=RUNTIMES, default=PipelineConfig.runtime,
                       help="n3d: language-model runtime (llamacpp: a GGUF from n3d export-gguf)")
    group.add_argument("--gguf", default="", help="n3d + llamacpp: the GGUF file "
                       "(default: <model dir>/n3d-lm-<gguf-quant or q4_k_m>.gguf)")
    group.add_argument("--gguf-quant", choices=GGUF_QUANTS, default="",
                       help="n3d + llamacpp: the quantisation the GGUF must hold")
    group.add_argument("--min-range", type=float, default=PipelineConfig.min_range_m, help="metres")
    group.add_argument("--max-range", type=float, default=PipelineConfig.max_range_m, help="metres")


def pipeline_from_args(args: argparse.Namespace) -> Pipeline:
    return Pipeline.from_config(PipelineConfig(
        backend=args.backend, model=args.model, device=args.device, dtype=args.dtype,
        quantization=args.quantization, sampling=args.sampling, max_new_tokens=args.max_new_tokens,
        refine=args.refine, min_range_m=args.min_range, max_range_m=args.max_range,
        prefix_cache=not args.no_prefix_cache, constrained_decoding=not args.no_constrained_decoding,
        single_object_stop=args.single_object_stop, allow_download=args.allow_download,
        runtime=args.runtime, gguf=args.gguf, gguf_quant=args.gguf_quant,
    ))


def camera_from_json(path: Path):
    """A camera from a JSON file: CameraInfo-style (width, height, k[9], d, distortion_model, frame_id) or
    width, height, fx, fy, cx, cy. Every malformed file gives an InputError naming the file and the field."""
    from ..core.camera import camera_from_info

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read intrinsics JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: intrinsics must be a JSON object, got {type(data).__name__}")
    missing = [key for key in ("width", "height") if key not in data]
    if "k" not in data and "K" not in data:
        missing += [key for key in ("fx", "fy", "cx", "cy") if key not in data]
    if missing:
        raise InputError(f"{path}: intrinsics need width, height and k[9] (or fx, fy, cx, cy); missing {missing}")
    try:
        k = data.get("k", data.get("K"))
        if k is None:
            k = [data["fx"], 0.0, data["cx"], 0.0, data["fy"], data["cy"], 0.0, 0.0, 1.0]
        k = [float(v) for v in k]
        width, height = data["width"], data["height"]
        if isinstance(width, bool) or isinstance(height, bool) or int(width) != width or int(height) != height:
            raise ValueError(f"width/height must be whole numbers, got {width!r}, {height!r}")
        d = tuple(float(v) for v in data.get("d", data.get("D", ())))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed intrinsics ({exc})") from exc
    return camera_from_info(int(width), int(height), k, d=d,
                            distortion_model=str(data.get("distortion_model", "plumb_bob")),
                            frame_id=str(data.get("frame_id", "camera_color_optical_frame")))


def read_color(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: cannot read a colour image (exists: {Path(path).exists()})")
    return np.ascontiguousarray(image[:, :, ::-1])  # OpenCV reads BGR


def read_depth(path: Path, min_range_m: float, max_range_m: float):
    """(depth in metres with the range applied, the raw readout for refusals: core/depth_check.py)."""
    from ..core.depth_check import read_depth_payload
    from ..core.images import decode_depth

    path = Path(path)
    if path.suffix == ".npy":
        depth = np.load(path)
        if depth.ndim != 2 or depth.dtype.kind != "f":
            raise InputError(f"{path}: .npy depth must be an HxW float array in metres, got {depth.shape} {depth.dtype}")
        encoding = "32FC1"
        depth = depth.astype(np.float32)
    else:
        import cv2

        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise InputError(f"{path}: cannot read a depth image (exists: {path.exists()})")
        if depth.dtype != np.uint16 or depth.ndim != 2:
            raise InputError(f"{path}: depth PNG must be single-channel 16-bit millimetres, got {depth.dtype} "
                             f"with shape {depth.shape}")
        encoding = "16UC1"
    height, width = depth.shape
    payload = depth.tobytes()
    metres = decode_depth(payload, encoding, width, height, min_range_m=min_range_m, max_range_m=max_range_m)
    return metres, read_depth_payload(payload, encoding, width, height)


def frame_from_args(args: argparse.Namespace) -> RGBDFrame:
    if args.scene is not None:
        color, depth, intrinsics = args.scene / "color.png", args.scene / "depth.png", args.scene / "camera_info.json"
    else:
        missing = [name for name in ("color", "depth", "intrinsics") if getattr(args, name) is None]
        if missing:
            raise InputError("give --scene DIR or all of --color, --depth, --intrinsics (missing: "
                             + ", ".join("--" + m for m in missing) + ")")
        color, depth, intrinsics = args.color, args.depth, args.intrinsics
    camera = camera_from_json(intrinsics)
    metres, readout = read_depth(depth, args.min_range, args.max_range)
    return RGBDFrame(color=read_color(color), depth=metres, camera=camera, frame_id=camera.frame_id,
                     depth_readout=readout)


def print_json(payload: dict) -> None:
    try:
        print(json.dumps(payload, indent=2), flush=True)
    except BrokenPipeError:  # `n3d ... | head`: the reader left; not an error of ours
        sys.stdout = open(os.devnull, "w")
