#!/usr/bin/env python3
"""Cost of refusing unusable input up front (issue 12), against the work it precedes, in one run.

Prints medians over repeats (milliseconds) on a 640x480 synthetic scene:
  1. the per-frame usability check (intrinsics + depth validity, core.depth_check.frame_problem, uncached),
     against build_point_map (the n3d backend's first step) and TabletopBackend.detect on the same frame;
  2. the depth readout a decoder can keep (read_depth_payload, 16UC1 and 32FC1), against decode_depth of the
     same payload;
  3. the box grammar's allowed-token mask for a class state: the vectorised pre-filter of tokens with ','
     or parentheses (what the grammar does) against running the state machine on every such token.

Usage: python bench/bench_frame_checks.py [--repeats 15]
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import median_ms  # noqa: E402


def row(name, ms, baseline_ms=None):
    ratio = f"  ({ms / baseline_ms:.3f} x baseline)" if baseline_ms else "  (baseline)"
    print(f"  {name:<52} {ms:9.3f} ms{ratio}")


def bench_frame_check(repeats):
    from n3d_ros.backends.tabletop import TabletopBackend
    from n3d_ros.core.depth_check import frame_problem
    from n3d_ros.core.pointmap import build_point_map
    from n3d_ros.core.scene import make_scene
    from n3d_ros.core.types import RGBDFrame

    frame = make_scene(3).frame

    def check():
        fresh = RGBDFrame(frame.color, frame.depth, frame.camera)  # a new object: nothing cached
        assert frame_problem(fresh, 0.1, 10.0) is None

    print("1. per-frame usability check, 640x480")
    point_map = median_ms(lambda: build_point_map(frame), repeats)
    row("build_point_map (n3d backend's first step)", point_map)
    row("TabletopBackend.detect", median_ms(lambda: TabletopBackend().detect(frame), repeats), point_map)
    row("frame_problem (good frame: intrinsics + depth)", median_ms(check, repeats), point_map)
    blank = np.full_like(frame.depth, np.nan)
    row("frame_problem (all-NaN frame: + description)",
        median_ms(lambda: frame_problem(RGBDFrame(frame.color, blank, frame.camera), 0.1, 10.0), repeats), point_map)


def bench_readout(repeats):
    from n3d_ros.core.depth_check import read_depth_payload
    from n3d_ros.core.images import decode_depth
    from n3d_ros.core.scene import make_scene

    scene = make_scene(3)
    height, width = scene.depth_mm.shape
    print("2. depth readout kept by a decoder, 640x480")
    for encoding, payload in (("16UC1", scene.depth_mm.astype("<u2").tobytes()),
                              ("32FC1", np.nan_to_num(scene.frame.depth, nan=0.0).astype("<f4").tobytes())):
        decode = median_ms(lambda: decode_depth(payload, encoding, width, height, min_range_m=0.1,
                                                max_range_m=10.0), repeats)
        row(f"decode_depth {encoding}", decode)
        row(f"read_depth_payload {encoding}",
            median_ms(lambda: read_depth_payload(payload, encoding, width, height), repeats), decode)


def bench_grammar(repeats):
    from n3d_ros.engine.protocol.box_grammar import BoxGrammar, advance_text
    from n3d_ros.engine.protocol.tokenizer import offline_qwen_tokenizer

    grammar = BoxGrammar.from_tokenizer(offline_qwen_tokenizer(), [151645, 151643])
    states = [("cls", count, depth, 0) for count, depth in ((3, 0), (8, 1), (12, 0), (20, 2))]
    texts = [grammar.token_texts[tid] for tid in grammar._class_structure]

    def loop_all():
        for state in states:
            [advance_text(state, text) is not None for text in texts]

    def mask_all():
        grammar._cache.clear()
        for state in states:
            grammar.allowed(state)

    print(f"3. class-state masks ({len(texts)} tokens hold ',' '(' or ')'), per state")
    loop = median_ms(loop_all, max(3, repeats // 3)) / len(states)
    row("state machine on every such token (no pre-filter)", loop)
    row("BoxGrammar.allowed (pre-filter, whole mask)", median_ms(mask_all, repeats) / len(states), loop)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    bench_frame_check(args.repeats)
    bench_readout(args.repeats)
    bench_grammar(args.repeats)


if __name__ == "__main__":
    main()
