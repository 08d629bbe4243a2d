"""Match colour, depth and camera_info messages by stamp and keep only the newest matched set.

Written here rather than taken from message_filters: that package is not installable without a ROS
distribution, and what we need is small: a few recent messages per stream, the newest colour stamp that
has a depth and a camera_info within the slop, and nothing older than the last match.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Optional, Tuple

STREAMS = ("color", "depth", "info")
# A match this much older than the latest one means time went backwards (bag loop, sim-time reset), not
# network reordering: start over from it instead of discarding every new frame forever.
TIME_JUMP_NS = 1_000_000_000


@dataclass(frozen=True)
class MatchedSet:
    stamp_ns: int          # the colour stamp
    color: Any
    depth: Any
    info: Any
    skew_ns: int           # the largest |stamp difference| to the colour stamp


class StampMatcher:
    """Thread-safe: sensor callbacks call add(); queries read latest()."""

    def __init__(self, slop_ns: int, history: int = 8,
                 on_time_jump: Optional[Callable[[int, int], None]] = None):
        if slop_ns < 0:
            raise ValueError(f"slop must be >= 0, got {slop_ns} ns")
        self.slop_ns = int(slop_ns)
        self._queues: Dict[str, Deque[Tuple[int, Any]]] = {name: deque(maxlen=history) for name in STREAMS}
        self._latest: Optional[MatchedSet] = None
        self._lock = threading.Lock()
        self._new_match = threading.Condition(self._lock)
        # on_time_jump(previous_stamp_ns, new_stamp_ns), called (outside the lock) when the matcher restarts.
        self.on_time_jump = on_time_jump

    def add(self, stream: str, stamp_ns: int, message: Any) -> Optional[MatchedSet]:
        """Store one message; return the new matched set if this message completed one."""
        if stream not in self._queues:
            raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
        jumped_from = None
        with self._lock:
            self._queues[stream].append((int(stamp_ns), message))
            latest_ns = self._latest.stamp_ns if self._latest is not None else None
            # Late (reordered) sets at or before the latest stamp are never used: a newer one exists.
            match = self._newest_match(lambda stamp: latest_ns is None or stamp > latest_ns)
            if match is None and latest_ns is not None:
                # A complete set far older than the latest: time went backwards, not network reordering.
                match = self._newest_match(lambda stamp: stamp < latest_ns - TIME_JUMP_NS)
                if match is None:
                    return None
                # Restart from this set: whatever was stamped before the jump can never match again.
                jumped_from = latest_ns
                for queue in self._queues.values():
                    kept = [item for item in queue if item[0] <= match.stamp_ns + self.slop_ns]
                    queue.clear()
                    queue.extend(kept)
            if match is None:
                return None
            self._latest = match
            # Nothing that could only match the matched colour stamp or an older one is kept.
            for name, queue in self._queues.items():
                oldest_useful = match.stamp_ns + 1 - (0 if name == "color" else self.slop_ns)
                while queue and queue[0][0] < oldest_useful:
                    queue.popleft()
            self._new_match.notify_all()
        if jumped_from is not None and self.on_time_jump is not None:
            self.on_time_jump(jumped_from, match.stamp_ns)
        return match

    def _newest_match(self, wanted: Callable[[int], bool]) -> Optional[MatchedSet]:
        # Newest stamp first, whatever the arrival order (drivers and networks reorder).
        for color_stamp, color in sorted(self._queues["color"], key=lambda item: item[0], reverse=True):
            if not wanted(color_stamp):
                continue
            depth = self._closest("depth", color_stamp)
            info = self._closest("info", color_stamp)
            if depth is not None and info is not None:
                skew = max(abs(depth[0] - color_stamp), abs(info[0] - color_stamp))
                return MatchedSet(color_stamp, color, depth[1], info[1], skew)
        return None

    def _closest(self, stream: str, stamp_ns: int) -> Optional[Tuple[int, Any]]:
        best = min(self._queues[stream], key=lambda item: abs(item[0] - stamp_ns), default=None)
        if best is None or abs(best[0] - stamp_ns) > self.slop_ns:
            return None
        return best

    def latest(self) -> Optional[MatchedSet]:
        with self._lock:
            return self._latest

    def wait_newer(self, stamp_ns: int, timeout_s: float) -> Optional[MatchedSet]:
        """Block until a matched set with a colour stamp after stamp_ns exists; None on timeout."""
        with self._lock:
            self._new_match.wait_for(
                lambda: self._latest is not None and self._latest.stamp_ns > stamp_ns, timeout=max(0.0, timeout_s))
            if self._latest is not None and self._latest.stamp_ns > stamp_ns:
                return self._latest
            return None

    def newest_stamps(self) -> Dict[str, Optional[int]]:
        """The newest stamp waiting in each stream's queue (None for an empty one): what the watchdog compares
        when stamps stop agreeing."""
        with self._lock:
            return {name: max((item[0] for item in queue), default=None) for name, queue in self._queues.items()}

    def pending(self) -> Dict[str, int]:
        with self._lock:
            return {name: len(queue) for name, queue in self._queues.items()}

    def clear(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
            self._latest = None
