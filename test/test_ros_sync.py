"""Stamp matching of colour, depth and camera_info (pure Python, no ROS needed)."""

from __future__ import annotations

import itertools
import threading

from hypothesis import given, settings, strategies as st

from n3d_ros.ros.sync import StampMatcher

MS = 1_000_000


def test_matches_within_slop_and_keeps_only_the_newest():
    matcher = StampMatcher(slop_ns=5 * MS)
    assert matcher.add("color", 100 * MS, "c100") is None
    assert matcher.add("depth", 103 * MS, "d103") is None
    match = matcher.add("info", 100 * MS, "i100")
    assert (match.color, match.depth, match.info, match.skew_ns) == ("c100", "d103", "i100", 3 * MS)
    matcher.add("color", 133 * MS, "c133")
    matcher.add("info", 133 * MS, "i133")
    assert matcher.latest().color == "c100"  # depth for 133 not there yet
    newer = matcher.add("depth", 131 * MS, "d131")
    assert (newer.color, newer.depth) == ("c133", "d131")
    assert matcher.latest() is newer


def test_refuses_pairs_outside_the_slop():
    matcher = StampMatcher(slop_ns=5 * MS)
    matcher.add("color", 100 * MS, "c")
    matcher.add("info", 100 * MS, "i")
    assert matcher.add("depth", 106 * MS, "d") is None
    assert matcher.latest() is None


def test_an_older_set_never_replaces_a_newer_one():
    matcher = StampMatcher(slop_ns=2 * MS)
    for name in ("color", "depth", "info"):
        matcher.add(name, 200 * MS, name + "200")
    # A late depth/info for an old colour frame arrives after the newer match.
    matcher.add("color", 150 * MS, "c150")
    matcher.add("depth", 150 * MS, "d150")
    assert matcher.add("info", 150 * MS, "i150") is None
    assert matcher.latest().color == "color200"


def test_wait_newer_wakes_on_a_match_from_another_thread():
    matcher = StampMatcher(slop_ns=0)
    timer = threading.Timer(0.05, lambda: [matcher.add(n, 7, n) for n in ("color", "depth", "info")])
    timer.start()
    match = matcher.wait_newer(0, timeout_s=5.0)
    assert match is not None and match.stamp_ns == 7
    assert matcher.wait_newer(7, timeout_s=0.05) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["color", "depth", "info"]), st.integers(0, 60)), max_size=40),
       st.integers(0, 6))
def test_latest_is_the_newest_matchable_colour_stamp_seen_so_far(events, slop):
    """Reference: brute force over every message ever seen (the matcher keeps a bounded history, so it may
    only miss sets that the reference finds among messages it has pruned as too old)."""
    matcher = StampMatcher(slop_ns=slop, history=64)
    seen = {"color": [], "depth": [], "info": []}
    best = None
    for stream, stamp in events:
        seen[stream].append(stamp)
        matcher.add(stream, stamp, (stream, stamp))
        candidates = [c for c, d, i in itertools.product(seen["color"], seen["depth"], seen["info"])
                      if abs(d - c) <= slop and abs(i - c) <= slop]
        if candidates:
            best = max(candidates) if best is None else max(best, max(candidates))
        latest = matcher.latest()
        assert (latest.stamp_ns if latest else None) == best
        if latest:
            assert abs(latest.depth[1] - latest.stamp_ns) <= slop and abs(latest.info[1] - latest.stamp_ns) <= slop
