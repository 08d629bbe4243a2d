"""Write test/fixtures/pixel_values_pillow11.json: what the official N3D-VLM image path gives on seeded frames.

Run it ONCE, in a scratch environment outside the repository that has the official environment's Pillow
(spec 8: Pillow 11.2.1, transformers 4.52.4, numpy 1.26.4), from the repository root:

    python3.11 -m venv /tmp/pil11
    /tmp/pil11/bin/pip install pillow==11.2.1 numpy==1.26.4 torch==2.13.0 transformers==4.52.4
    /tmp/pil11/bin/python ci/make_pixel_fixture.py test/fixtures/pixel_values_pillow11.json

(transformers 5.x works too: it then uses Qwen2VLImageProcessorPil; both gave the same file.)

The reference path is the official demo's (spec 1.1), written out here with nothing but stock Pillow and the
stock slow image processor: image.resize to the 640 long side with LANCZOS, then image_processor([image])
(smart_resize, BICUBIC to multiples of 28, rescale, normalise, patchify). No n3d_ros code is imported, so the
fixture cannot inherit our mistakes. test/test_pixel_values_pillow11.py checks that our path (core.pointmap
+ engine.encode_image) reproduces it under the Pillow we ship.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys

import numpy as np

# Width x height, seed. The first five are the frames of issue 11; 769x512, 1024x683 and 767x1023 are the
# sizes of the official demo images, 848x480 a RealSense wide mode.
FRAMES = [(640, 480, 1), (640, 426, 2), (640, 400, 3), (480, 640, 4), (1280, 720, 5),
          (769, 512, 6), (1024, 683, 7), (767, 1023, 8), (848, 480, 9)]
# Plain resizes: source (w, h), target (w, h), filter, seed. Some of these are ones Pillow 13 computes
# vertical pass first (640x480 -> 644x476, 200x300 -> 199x100).
RESIZES = [((640, 480), (644, 476), "BICUBIC", 11), ((640, 480), (644, 476), "LANCZOS", 12),
           ((200, 300), (199, 100), "LANCZOS", 13), ((200, 300), (199, 100), "BICUBIC", 14),
           ((300, 200), (100, 199), "LANCZOS", 15), ((769, 512), (640, 426), "LANCZOS", 16)]
# The stock Qwen2.5-VL preprocessor_config.json (spec 1.1; the tiny test checkpoint writes the same values).
PROCESSOR_CONFIG = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "do_convert_rgb": True, "resample": 3,
}
SAMPLES = 12  # pixel_values entries recorded as numbers, next to the checksum


def synthetic_frame(width: int, height: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB: PCG64 noise over a colour gradient and a 5x7 px checkerboard.

    Noise and hard edges make every resampling difference show. The noise is PCG64's raw bit stream, which
    numpy keeps fixed across versions (its distributions, e.g. integers(), may change).
    """
    count = width * height * 3
    raw = np.random.PCG64(seed).random_raw((count + 7) // 8).astype("<u8").view(np.uint8)[:count]
    noise = raw.reshape(height, width, 3) // 2  # 0..127
    rows, cols = np.mgrid[0:height, 0:width]
    gradient = np.stack([cols * 63 // max(width - 1, 1), rows * 63 // max(height - 1, 1),
                         (cols + rows) * 63 // (width + height)], axis=-1)  # 0..63
    checker = ((rows // 7 + cols // 5) % 2) * 64  # 0 or 64
    return (noise + gradient + checker[:, :, None]).astype(np.uint8)  # at most 127 + 63 + 64 = 254


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def sample_positions(rows: int, cols: int):
    """SAMPLES (row, col) positions spread over a (rows, cols) array, the same for every run."""
    return [((k * 2654435761) % rows, (k * 40503 + 17) % cols) for k in range(SAMPLES)]


def summarise(pixel_values: np.ndarray) -> dict:
    values = np.ascontiguousarray(pixel_values, dtype="<f4")
    return {"shape": list(values.shape), "dtype": "float32", "sha256": sha256(values),
            "samples": [[r, c, float(values[r, c])] for r, c in sample_positions(*values.shape)]}


def official_long_side_640(image):
    """demo.py's resize (spec 1.1 step 2): long side 640 with LANCZOS, short side truncated with int()."""
    from PIL import Image

    width, height = image.size
    size = (640, int(height * 640 / width)) if width >= height else (int(width * 640 / height), 640)
    return image.resize(size, Image.Resampling.LANCZOS)


def stock_processor():
    try:  # transformers 5.x: the PIL backend is the slow processor of 4.x
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil as cls
    except ImportError:  # transformers 4.x, as the official environment (4.52.4)
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor as cls
    return cls(**PROCESSOR_CONFIG)


def main(out_path: str) -> None:
    import PIL
    import transformers
    from PIL import Image

    processor = stock_processor()
    frames = []
    for width, height, seed in FRAMES:
        image = official_long_side_640(Image.fromarray(synthetic_frame(width, height, seed)))
        out = processor([image], return_tensors="pt")
        t, gh, gw = (int(v) for v in out["image_grid_thw"][0])
        # the processor's own resize step on its own, so that a failing test can say which step differs
        resized = image.resize((gw * 14, gh * 14), Image.Resampling.BICUBIC)
        frames.append({"width": width, "height": height, "seed": seed,
                       "image_640": {"size": list(image.size), "sha256": sha256(np.asarray(image))},
                       "processor_image": {"size": [gw * 14, gh * 14], "sha256": sha256(np.asarray(resized))},
                       "grid_thw": [t, gh, gw], "pixel_values": summarise(out["pixel_values"].numpy())})
        print(f"{width}x{height}: 640 image {image.size}, grid {gh}x{gw}, {frames[-1]['pixel_values']['sha256'][:16]}")
    resizes = []
    for source, target, name, seed in RESIZES:
        image = Image.fromarray(synthetic_frame(source[0], source[1], seed))
        resizes.append({"source": list(source), "target": list(target), "filter": name, "seed": seed,
                        "sha256": sha256(np.asarray(image.resize(target, getattr(Image.Resampling, name))))})
    fixture = {
        "about": "pixel_values of the official N3D-VLM image path (spec 1.1) on seeded synthetic frames; "
                 "written once by ci/make_pixel_fixture.py, checked by test/test_pixel_values_pillow11.py",
        "environment": {"python": platform.python_version(), "pillow": PIL.__version__,
                        "transformers": transformers.__version__, "numpy": np.__version__,
                        "processor": type(processor).__name__},
        "processor_config": PROCESSOR_CONFIG, "frames": frames, "resizes": resizes,
    }
    with open(out_path, "w") as handle:
        json.dump(fixture, handle, indent=1)
        handle.write("\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT.json   (see the docstring: run once with Pillow 11.2.1)")
    main(sys.argv[1])
