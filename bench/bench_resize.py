#!/usr/bin/env python3
"""Cost of doing the image path's two resizes horizontal pass first (core.resize) instead of Pillow's own
image.resize, measured in the same run, plus YUYV colour decoding against rgb8.

Prints median milliseconds of:
- the processor step 640x480 -> 644x476 BICUBIC and the 1280x720 -> 640x360 LANCZOS step, each with Pillow's
  image.resize (baseline; on Pillow 13 it may run the vertical pass first) and with resize_horizontal_first;
- engine.encode_image (tiny checkpoint's processor) on a 640x480 image: the stock processor call that resizes
  itself (baseline) and ours (resize_horizontal_first, then the processor with do_resize=False);
- decode_color of a 640x480 frame as rgb8 (baseline) and as yuv422_yuy2.

Usage: python bench/bench_resize.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n3d_ros.core.images import decode_color  # noqa: E402
from n3d_ros.core.resize import resize_horizontal_first  # noqa: E402
from timing import median_ms as timing_median_ms  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    return timing_median_ms(fn, repeats, warmup=1)


def main() -> None:
    import cv2
    import PIL
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"Pillow {PIL.__version__}, median of {args.repeats} runs, ms")
    for (w, h), size, name in (((640, 480), (644, 476), "BICUBIC"), ((1280, 720), (640, 360), "LANCZOS")):
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        resample = getattr(Image.Resampling, name)
        stock = median_ms(lambda: image.resize(size, resample), args.repeats)
        ours = median_ms(lambda: resize_horizontal_first(image, size, resample), args.repeats)
        print(f"  {w}x{h} -> {size[0]}x{size[1]} {name}: image.resize {stock:.2f}, horizontal first {ours:.2f}")

    from n3d_ros.core.pointmap import N3DInputs
    from n3d_ros.engine.model import load_engine
    from n3d_ros.engine.tiny import cached_tiny_checkpoint

    engine = load_engine(str(cached_tiny_checkpoint()), device="cpu", dtype="float32", max_new_tokens=4)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    inputs = N3DInputs(image=image, points=np.zeros((480 * 640, 4), np.float32), map_hw=(480, 640),
                       shift0=np.zeros(3), scaling=1.0, intrinsics_n=(1.0, 1.0, 0.5, 0.5), source_hw=(480, 640),
                       valid_fraction=1.0)
    processor = engine.image_processor
    stock = median_ms(lambda: processor(images=[image], return_tensors="pt"), args.repeats)
    ours = median_ms(lambda: engine.encode_image(inputs), args.repeats)
    print(f"  encode_image 640x480: stock processor {stock:.2f}, ours {ours:.2f}")
    engine.close()

    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    yuyv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2).tobytes()
    rgb_bytes = rgb.tobytes()
    base = median_ms(lambda: decode_color(rgb_bytes, "rgb8", 640, 480), args.repeats)
    yuv = median_ms(lambda: decode_color(yuyv, "yuv422_yuy2", 640, 480), args.repeats)
    print(f"  decode_color 640x480: rgb8 {base:.2f}, yuv422_yuy2 {yuv:.2f}")


if __name__ == "__main__":
    main()
