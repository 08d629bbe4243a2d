#!/usr/bin/env python3
"""Speed of depth decode + N3D point map + host normalisation, against a plain per-pixel Python reference
measured in the same run, on synthetic 640x480 and 1280x720 RealSense-like frames (16UC1 millimetres).

For each size it prints the median time of: decode_depth, build_point_map (which includes the colour
LANCZOS resize when the frame is not 640 wide, outlier filtering and normalisation), their sum, and the
reference doing the same work pixel by pixel (it shares only the PIL image resize). It also checks that both
produce the same point map. Target: under 5 ms in total for 640x480.

Usage: python bench/bench_pointmap.py [--repeats 50] [--ref-repeats 1]
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n3d_ros.core.images import decode_depth  # noqa: E402
from n3d_ros.core.pointmap import build_point_map, outlier_tolerance_m, target_size  # noqa: E402
from n3d_ros.core.scene import make_scene  # noqa: E402
from n3d_ros.core.types import RGBDFrame  # noqa: E402
from timing import median_ms  # noqa: E402

TARGET_MS_640 = 5.0


def reference_point_map(data: bytes, width: int, height: int, color, camera, min_r=0.1, max_r=10.0):
    """Everything build_point_map does, one pixel at a time in plain Python (the baseline)."""
    from PIL import Image

    depth = [[0.0] * width for _ in range(height)]
    for i in range(height):
        for j in range(width):
            mm = struct.unpack_from("<H", data, 2 * (i * width + j))[0]
            depth[i][j] = mm / 1000.0 if mm else float("nan")
    W, H = target_size(width, height)
    image = Image.fromarray(color)
    if (W, H) != (width, height):
        image = image.resize((W, H), Image.LANCZOS)
    z = [[0.0] * W for _ in range(H)]
    for i in range(H):
        si = min(int((i + 0.5) * height / H), height - 1)
        for j in range(W):
            d = depth[si][min(int((j + 0.5) * width / W), width - 1)]
            z[i][j] = d if (d == d and min_r <= d <= max_r) else 0.0

    def close(a, b):
        return b > 0 and abs(a - b) <= outlier_tolerance_m(max(a, b))

    valid = [[False] * W for _ in range(H)]
    for i in range(H):
        for j in range(W):
            c = z[i][j]
            if c > 0:
                horizontal = (j > 0 and close(c, z[i][j - 1])) or (j < W - 1 and close(c, z[i][j + 1]))
                vertical = (i > 0 and close(c, z[i - 1][j])) or (i < H - 1 and close(c, z[i + 1][j]))
                valid[i][j] = horizontal and vertical
    fx_n, fy_n, cx_n, cy_n = camera.normalized_intrinsics()
    pts = []
    for i in range(H):
        for j in range(W):
            if valid[i][j]:
                d = z[i][j]
                pts.append((-((j + 0.5) / W - cx_n) / fx_n * d, -((i + 0.5) / H - cy_n) / fy_n * d, d, i * W + j))
    shift = [min(p[a] for p in pts) for a in range(3)]
    mean_norm = sum(math.sqrt(sum((p[a] - shift[a]) ** 2 for a in range(3))) for p in pts) / len(pts)
    scaling = 1.0 / mean_norm
    out = [[0.0, 0.0, 0.0, 0.0] for _ in range(H * W)]
    for p in pts:
        out[p[3]] = [(p[0] - shift[0]) * scaling, (p[1] - shift[1]) * scaling, (p[2] - shift[2]) * scaling, 1.0]
    return out, shift, scaling


def bench(width, height, repeats, ref_repeats):
    scene = make_scene(1, width=width, height=height)
    data = scene.depth_mm.astype("<u2").tobytes()
    camera, color = scene.frame.camera, scene.frame.color

    def ours():
        depth = decode_depth(data, "16UC1", width, height, step=2 * width)
        return build_point_map(RGBDFrame(color=color, depth=depth, camera=camera))

    ours()  # warm caches and lazy imports
    decoded = decode_depth(data, "16UC1", width, height)
    frame = RGBDFrame(color=color, depth=decoded, camera=camera)
    t_decode = median_ms(lambda: decode_depth(data, "16UC1", width, height, step=2 * width), repeats)
    t_map = median_ms(lambda: build_point_map(frame), repeats)
    t_total = median_ms(ours, repeats)
    from PIL import Image

    image = Image.fromarray(color)
    size = target_size(width, height)
    t_resize = median_ms(lambda: image.resize(size, Image.LANCZOS), repeats) if size != (width, height) else 0.0
    t_ref = median_ms(lambda: reference_point_map(data, width, height, color, camera), ref_repeats)

    result = ours()
    ref_points, ref_shift, ref_scaling = reference_point_map(data, width, height, color, camera)
    max_diff = float(np.max(np.abs(result.points - np.asarray(ref_points, dtype=np.float64))))
    print(f"{width}x{height} -> map {result.map_hw[1]}x{result.map_hw[0]}, valid {result.valid_fraction:.1%}")
    print(f"  decode_depth           median {t_decode:8.2f} ms")
    print(f"  build_point_map        median {t_map:8.2f} ms   (of which colour LANCZOS resize {t_resize:.2f} ms)")
    print(f"  decode + point map     median {t_total:8.2f} ms")
    print(f"  per-pixel reference    median {t_ref:8.1f} ms   ratio reference/ours = {t_ref / t_total:,.0f}x")
    print(f"  agreement: max |points - reference| = {max_diff:.2e}, shift0 diff "
          f"{np.max(np.abs(result.shift0 - ref_shift)):.2e}, scaling rel diff "
          f"{abs(result.scaling / ref_scaling - 1):.2e}")
    return t_total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--ref-repeats", type=int, default=1)
    args = parser.parse_args()
    t640 = bench(640, 480, args.repeats, args.ref_repeats)
    bench(1280, 720, args.repeats, args.ref_repeats)
    verdict = "meets" if t640 < TARGET_MS_640 else "MISSES"
    print(f"640x480 decode + point map {t640:.2f} ms {verdict} the {TARGET_MS_640:.0f} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
