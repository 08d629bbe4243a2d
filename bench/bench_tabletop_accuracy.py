"""Accuracy and speed of the tabletop backend and of depth refinement on seeded synthetic scenes.

    python bench/bench_tabletop_accuracy.py [--scenes 50] [--noise-free]

For every scene (core.scene.make_scene(seed), seeds 0..N-1) it reports, against the ground-truth boxes:
* tabletop: each ground-truth object paired with the detected box of highest 3D IoU (core.boxes.iou_3d);
  missed objects count as IoU 0; extra detections are counted;
* refine(GT + noise): ground truth moved by N(0, 2 cm) per axis and scaled by U(0.8, 1.25) per axis (a poor
  model prediction), before and after refine_box;
* refine(tabletop): the tabletop boxes refined again (should change little: same points, same fit).
Speed: median milliseconds per 640x480 frame for detect, per box for refine, and as a baseline measured in the
same run, back-projecting the frame's depth (the least any depth-based method must do): the ratios say how
many back-projections each step costs. Target: tabletop mean IoU >= 0.7, detect < 100 ms per frame.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from n3d_ros.backends.refine import refine_box  # noqa: E402
from n3d_ros.backends.tabletop import TabletopBackend  # noqa: E402
from n3d_ros.core.boxes import iou_3d  # noqa: E402
from n3d_ros.core.camera import backproject_depth  # noqa: E402
from n3d_ros.core.scene import make_scene  # noqa: E402


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def _summary(name: str, ious, errors_m) -> str:
    ious, errors = np.asarray(ious), np.asarray(errors_m) * 100.0
    return (f"{name:<24} IoU mean {ious.mean():.3f} median {np.median(ious):.3f} min {ious.min():.3f} | "
            f"centre error cm mean {errors.mean():.2f} median {np.median(errors):.2f} max {errors.max():.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=50)
    parser.add_argument("--noise-free", action="store_true", help="exact depth (no sensor effects)")
    args = parser.parse_args()

    backend = TabletopBackend()
    rng = np.random.default_rng(12345)
    rows = {"tabletop": ([], []), "GT+noise (before)": ([], []), "GT+noise refined": ([], []),
            "tabletop refined": ([], [])}
    shapes: dict = {}
    t_detect, t_refine, t_baseline = [], [], []
    missed = extra = objects = 0
    height_errors = {"measured height_m": [], "optical box y size": []}  # "how tall", metres
    for seed in range(args.scenes):
        scene = make_scene(seed, noise=not args.noise_free)
        frame = scene.frame
        _, baseline = _timed(backproject_depth, frame.depth, frame.camera)
        result, elapsed = _timed(backend.detect, frame)
        t_baseline.append(baseline)
        t_detect.append(elapsed)
        used = set()
        for truth in scene.objects:
            objects += 1
            best = max(result.boxes, key=lambda b: iou_3d(truth, b), default=None)
            iou = iou_3d(truth, best) if best is not None else 0.0
            if iou == 0.0:
                missed += 1
                rows["tabletop"][0].append(0.0)
                continue
            used.add(id(best))
            rows["tabletop"][0].append(iou)
            rows["tabletop"][1].append(np.linalg.norm(best.center - truth.center))
            shapes.setdefault(truth.attributes["shape"], []).append(iou)
            pose = truth.attributes["pose_table"]
            true_height = 2 * pose["radius"] if truth.attributes["shape"] == "sphere" else pose["height"]
            height_errors["measured height_m"].append(abs(best.attributes["height_m"] - true_height))
            height_errors["optical box y size"].append(abs(best.size[1] - true_height))
            (again, _), _ = _timed(refine_box, best, frame)
            rows["tabletop refined"][0].append(iou_3d(truth, again))
            rows["tabletop refined"][1].append(np.linalg.norm(again.center - truth.center))

            guess = replace(truth, center=truth.center + rng.normal(0.0, 0.02, 3),
                            size=truth.size * rng.uniform(0.8, 1.25, 3))
            (refined, _), elapsed = _timed(refine_box, guess, frame)
            t_refine.append(elapsed)
            for name, box in (("GT+noise (before)", guess), ("GT+noise refined", refined)):
                rows[name][0].append(iou_3d(truth, box))
                rows[name][1].append(np.linalg.norm(box.center - truth.center))
        extra += sum(id(b) not in used for b in result.boxes)

    print(f"{args.scenes} scenes, {objects} objects, {'exact' if args.noise_free else 'noisy'} depth")
    for name, (ious, errors) in rows.items():
        print(_summary(name, ious, errors))
    print("tabletop IoU by shape:  " + ", ".join(f"{k} {np.mean(v):.3f} (n={len(v)})" for k, v in sorted(shapes.items())))
    print(f"tabletop: missed {missed}, extra {extra}")
    print("height error cm (\"how tall\"; the camera is pitched 30-42 deg): " + " | ".join(
        f"{name} mean {np.mean(v) * 100:.2f} max {np.max(v) * 100:.2f}" for name, v in height_errors.items()))
    base = np.median(t_baseline) * 1000
    det, ref = np.median(t_detect) * 1000, np.median(t_refine) * 1000
    print(f"median ms: back-projection baseline {base:.2f} | detect per frame {det:.1f} ({det / base:.1f}x) | "
          f"refine per box {ref:.1f} ({ref / base:.1f}x)")
    mean_iou = float(np.mean(rows["tabletop"][0]))
    print(f"target tabletop mean IoU >= 0.7: {'met' if mean_iou >= 0.7 else 'NOT met'} ({mean_iou:.3f}); "
          f"detect < 100 ms: {'met' if det < 100 else 'NOT met'} ({det:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
