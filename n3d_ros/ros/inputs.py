"""The node's inputs: colour, depth and camera_info subscriptions feeding the stamp matcher, a watchdog that
names the stream that stopped (or the stamp skew that stops matching), and the checks that make a matched set
usable for a query: not too old, and not stamped in the future.

Future-stamp rule: a set stamped more than max_future_stamp_s ahead of the node's clock is refused (queries
and background detection) with a message about clock synchronisation, and /diagnostics goes ERROR. A camera
whose clock runs ahead would otherwise pass both the max_frame_age_s and the require_fresh_frame checks.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Tuple

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from ..core.types import InputError
from . import conversions as conv

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble's rclpy names the module qos_event
    from rclpy.qos_event import SubscriptionEventCallbacks

# (matcher stream, name in messages, parameter holding the topic)
STREAMS = (("color", "colour", "color_topic"), ("depth", "depth", "depth_topic"),
           ("info", "camera_info", "camera_info_topic"))
WARNING_PERIOD_S = 10.0  # each input problem is logged at most this often
LOW_MATCH_RATIO = 0.5    # fewer matched sets than this share of colour frames is reported


def input_qos(settings) -> QoSProfile:
    if settings.input_qos == "sensor_data":
        return QoSProfile(depth=settings.input_qos_depth, reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability)
    reliability = ReliabilityPolicy.RELIABLE if settings.input_qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=settings.input_qos_depth, reliability=reliability, durability=DurabilityPolicy.VOLATILE)


def future_stamp_message(ahead_s: float, settings) -> str:
    return (f"the latest frame is stamped {ahead_s:.2f} s ahead of this node's clock (max_future_stamp_s="
            f"{settings.max_future_stamp_s}): the camera's clock and this computer's clock disagree; synchronise "
            "them (chrony/PTP, or the driver's global-time option) or check use_sim_time")


class InputStreams:
    def __init__(self, node, stats, log, guard: Callable[[str, Callable], Callable]):
        self._node = node
        self.stats = stats
        self._log = log
        self._guard = guard  # wraps callbacks so that an exception is logged instead of ending spin
        self.subscriptions = []
        self.settings = None
        self.matcher = None
        self._started_at = 0.0
        self._counts_at_start = {}
        self._last_arrival = {}  # stream -> monotonic time of its last message
        self._last_match = None
        self._frame_cache = None  # (matched set, RGBDFrame) of the latest set a query or detection used
        self.problem = ""       # the watchdog's latest finding; '' while the inputs look healthy
        self.qos_problem = ""   # an incompatible-QoS report from DDS, until the next start

    # ------------------------------------------------------------------ lifecycle (the node shell calls these)
    def start(self, settings, matcher) -> None:
        """Subscribe to the three inputs; InputError naming the parameter whose topic could not be used."""
        self.settings, self.matcher = settings, matcher
        self._started_at = time.monotonic()
        self._counts_at_start = {stream: self.stats.received(stream) for stream in ("color", "depth", "info")}
        self._last_arrival, self._last_match, self.problem, self.qos_problem = {}, None, "", ""
        qos = input_qos(settings)
        for stream, label, parameter in STREAMS:
            topic = getattr(settings, parameter)
            kind = CameraInfo if stream == "info" else Image
            events = SubscriptionEventCallbacks(incompatible_qos=self._guard(
                f"{label} QoS event", lambda info, label=label, topic=topic: self._on_incompatible_qos(label, topic,
                                                                                                      info)))
            try:
                self.subscriptions.append(self._node.create_subscription(
                    kind, topic, self._guard(f"{label} subscription",
                                             lambda msg, stream=stream: self._on_message(stream, msg)),
                    qos, callback_group=self._node.sensor_group, event_callbacks=events))
            except Exception as exc:
                raise InputError(f"subscribing to {parameter}={topic!r} failed: {type(exc).__name__}: {exc}") from exc

    def stop(self) -> None:
        for subscription in self.subscriptions:
            self._node.destroy_subscription(subscription)
        self.subscriptions = []
        self.problem = ""

    def release(self) -> None:
        """Cleanup: forget the matcher and the cached frame (it holds the images and the backend's per-frame work)."""
        self.matcher, self._frame_cache, self.settings = None, None, None

    # ------------------------------------------------------------------ callbacks
    def _on_message(self, stream: str, msg) -> None:
        matcher, settings = self.matcher, self.settings
        if matcher is None or settings is None:
            return
        self.stats.tick(stream)
        self._last_arrival[stream] = time.monotonic()
        match = matcher.add(stream, conv.stamp_to_ns(msg.header.stamp), msg)
        if match is None:
            return
        self._last_match = time.monotonic()
        self.stats.tick("matched")
        problem = conv.check_alignment(match.color, match.depth, match.info)
        if problem:
            self.stats.count("rejected_frames")
            self.stats.last_problem = problem
            self._log.warning("alignment", f"input refused: {problem}", 5.0)
        else:
            self.stats.last_problem = ""
        ahead_s = self.ahead_s(match)
        if ahead_s > settings.max_future_stamp_s:
            self.stats.count("future_stamped_frames")
            self._log.warning("future stamp", future_stamp_message(ahead_s, settings), WARNING_PERIOD_S)

    def _on_incompatible_qos(self, label: str, topic: str, info) -> None:
        policy = getattr(info.last_policy_kind, "name", info.last_policy_kind)
        self.qos_problem = (
            f"a publisher on {topic} ({label}) offers a QoS this node cannot receive with input_qos="
            f"{self.settings.input_qos if self.settings else '?'} (incompatible policy: {policy}); a best-effort "
            "publisher (simulators, some drivers) needs input_qos: best_effort; see `ros2 topic info -v " + topic + "`")
        self.stats.count("incompatible_qos")
        self._log.warning(f"qos {label}", self.qos_problem, WARNING_PERIOD_S)

    def check(self) -> None:
        """The watchdog timer: find what is wrong with the inputs, remember it for diagnostics, warn (throttled)."""
        finding = self.health()
        self.problem = finding[1] if finding else ""
        if finding:
            self._log.warning(f"inputs {finding[0]}", finding[1], WARNING_PERIOD_S)

    # ------------------------------------------------------------------ health
    def health(self) -> Optional[Tuple[str, str]]:
        """(kind, message) for the first problem found with the inputs, or None while they look healthy."""
        s, matcher = self.settings, self.matcher
        if s is None or matcher is None:
            return None
        if self.qos_problem:
            return "qos", self.qos_problem
        now = time.monotonic()
        quiet_s = s.no_input_warning_s
        if now - self._started_at < quiet_s:
            return None
        topics = {stream: (label, getattr(s, parameter)) for stream, label, parameter in STREAMS}
        never = [f"{label} ({topic})" for stream, (label, topic) in topics.items()
                 if self.stats.received(stream) == self._counts_at_start.get(stream, 0)]
        if never:
            return "silent", (
                f"nothing received after {now - self._started_at:.0f} s on {', '.join(never)} (subscribed with "
                f"{s.input_qos} QoS); check the topic names/remapping and the publisher's QoS (ros2 topic info -v)")
        stopped = [stream for stream in topics if now - self._last_arrival.get(stream, self._started_at) > quiet_s]
        if stopped:
            names = ", ".join(f"{topics[stream][0]} ({topics[stream][1]})" for stream in stopped)
            last = min(now - self._last_arrival.get(stream, self._started_at) for stream in stopped)
            alive = [f"{topics[stream][0]} at {self.stats.rate(stream):.1f} Hz" for stream in topics
                     if stream not in stopped]
            if not alive:
                return "stopped all", f"every input stopped: nothing on {names} for {last:.1f} s; is the camera running?"
            return f"stopped {' '.join(stopped)}", (
                f"{names} stopped: last message {last:.1f} s ago, while {' and '.join(alive)} still arrive")
        since_match = now - (self._last_match if self._last_match is not None else self._started_at)
        if since_match > quiet_s:
            return "skew", (f"colour, depth and camera_info arrive but no set has matched for {since_match:.1f} s: "
                            f"{self._skew_text(matcher.newest_stamps())} (sync_slop_s={s.sync_slop_s}); enable the "
                            "driver's sync (RealSense: enable_sync:=true) or raise sync_slop_s")
        color_hz, matched_hz = self.stats.rate("color"), self.stats.rate("matched")
        if color_hz >= 1.0 and matched_hz < LOW_MATCH_RATIO * color_hz:
            return "match rate", (f"only {matched_hz:.1f} of {color_hz:.1f} colour frames per second find a depth "
                                  f"and camera_info within sync_slop_s={s.sync_slop_s}: "
                                  f"{self._skew_text(matcher.newest_stamps())}")
        return None

    @staticmethod
    def _skew_text(newest) -> str:
        color = newest.get("color")
        if color is None:
            return "no colour stamp is waiting"
        parts = [f"the newest {label} stamp is {(newest[stream] - color) / 1e6:+.1f} ms from the newest colour stamp"
                 for stream, label in (("depth", "depth"), ("info", "camera_info")) if newest.get(stream) is not None]
        return "; ".join(parts) or "only colour stamps are waiting"

    # ------------------------------------------------------------------ frames for queries and detection
    @property
    def frame_cache(self):
        return self._frame_cache

    def ahead_s(self, match) -> float:
        """How far the set's stamp is ahead of the node clock (negative: its age)."""
        return (match.stamp_ns - self._node.get_clock().now().nanoseconds) / 1e9

    def usable_frame(self, match, pipeline):
        """RGBDFrame of a matched set, or InputError saying why it cannot be used."""
        s = self.settings
        if s is None:
            raise InputError("the node's inputs were stopped")
        ahead_s = self.ahead_s(match)
        if ahead_s > s.max_future_stamp_s:
            self.stats.count("future_frames_refused")
            raise InputError(future_stamp_message(ahead_s, s))
        if -ahead_s > s.max_frame_age_s:
            self.stats.count("stale_frames")
            finding = self.health()
            raise InputError(f"the latest frame is {-ahead_s:.2f} s old (max_frame_age_s={s.max_frame_age_s}); "
                             + (finding[1] if finding else "is the camera still publishing?"))
        cached = self._frame_cache
        if cached is not None and cached[0] is match:
            return cached[1]
        frame = conv.frame_from_msgs(match.color, match.depth, match.info, pipeline.config.min_range_m,
                                     pipeline.config.max_range_m)
        # One RGBDFrame per matched set: backends key their per-frame work (point map, the model's cached
        # image prefix) on the frame object, so every query about the same frame reuses it.
        self._frame_cache = (match, frame)
        return frame

    def no_frame_message(self) -> str:
        s = self.settings
        if s is None:
            return "the node's inputs were stopped"
        counts = ", ".join(f"{label} {self.stats.received(stream)}" for stream, label, _ in STREAMS)
        finding = self.health()
        return (f"no matched frame yet (received so far: {counts}); check {s.color_topic}, {s.depth_topic}, "
                f"{s.camera_info_topic} and their QoS, and that their stamps agree within sync_slop_s={s.sync_slop_s}"
                + (f"; {finding[1]}" if finding else ""))

    def no_fresh_frame_message(self, timeout_s: float) -> str:
        """Why a require_fresh_frame request timed out: no set ever matched, or none newer than the request."""
        matcher = self.matcher
        latest = matcher.latest() if matcher is not None else None
        if latest is None:
            return f"no fresh frame within the {timeout_s:.1f} s timeout; " + self.no_frame_message()
        finding = self.health()
        return (f"no frame newer than the request matched within the {timeout_s:.1f} s timeout; the latest matched "
                f"frame is {-self.ahead_s(latest):.2f} s old"
                + (f"; {finding[1]}" if finding else "; is the camera still publishing?"))
