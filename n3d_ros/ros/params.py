"""The node's parameters: declaration with defaults and descriptions, and validation at configure.

Defaults here equal config/n3d.yaml (a test checks that). Validation collects what the node needs into
NodeSettings and the pipeline's part into PipelineConfig; any bad value raises InputError naming it.
Every period and rate is bounded: rclpy's timer constructor overflows (and kills the process) past ~9e9 s,
and a period near zero makes an idle node burn a core.
"""

from __future__ import annotations

import array
import math
from dataclasses import dataclass
from typing import Optional

from ..core.types import InputError
from ..pipeline import PipelineConfig
from .memory_params import MEMORY_BOUNDS, MEMORY_PARAMETERS, MemorySettings, validate_memory

INPUT_QOS_CHOICES = ("sensor_data", "reliable", "best_effort")
# Upper bound of max_queued_queries: every request in flight holds one executor thread, so the node's
# executor (node.main) is sized from this bound plus a reserve for sensor and timer callbacks.
MAX_QUEUED_QUERIES_LIMIT = 64
MAX_FRAME_ID_CHARS = 256  # longer target frames are refused (and never echoed back whole)

# name -> (default, description)
PARAMETERS = {
    "backend": ("tabletop", "tabletop (model-free), n3d (N3D-VLM) or hispatial (HiSpatial-3B)"),
    "model": ("yuxinhk/N3D-VLM", "hub id or local checkpoint directory"),
    "device": ("auto", "auto, cpu, cuda, cuda:N or mps"),
    "dtype": ("bfloat16", "float32, bfloat16 or float16"),
    "quantization": ("", "'', 4bit or 8bit"),
    "sampling": ("greedy", "greedy or official"),
    "max_new_tokens": (1024, "generation limit per model turn"),
    "refine": (False, "refit boxes to the measured depth"),
    "prefix_cache": (True, "n3d: reuse the image prefill for every question on a frame"),
    "constrained_decoding": (True, "n3d: box grammar with drafted scaffold tokens for turn 1"),
    "single_object_stop": (False, "n3d: stop grounding after the first box of a single phrase"),
    "allow_download": (False, "n3d: download a hub id missing from the local cache at configure"),
    "runtime": ("transformers", "n3d: language-model runtime, transformers or llamacpp (an n3d export-gguf file)"),
    "gguf": ("", "n3d + llamacpp: GGUF from n3d export-gguf; '' = <model dir>/n3d-lm-<gguf_quant or q4_k_m>.gguf"),
    "gguf_quant": ("", "'', f32, f16, q8_0 or q4_k_m (checked against the GGUF when set)"),
    "min_range_m": (0.1, "nearest valid depth, metres"),
    "max_range_m": (10.0, "farthest valid depth, metres"),
    "color_topic": ("/camera/camera/color/image_raw", "colour image topic"),
    "depth_topic": ("/camera/camera/aligned_depth_to_color/image_raw", "depth topic, aligned to colour"),
    "camera_info_topic": ("/camera/camera/color/camera_info", "colour camera_info topic"),
    "input_qos": ("reliable", "reliable (what realsense2_camera publishes), best_effort (simulators and drivers "
                              "that publish best effort) or sensor_data (best effort, rclpy's sensor profile)"),
    "input_qos_depth": (5, "subscription queue depth"),
    "sync_slop_s": (0.02, "largest stamp difference between colour, depth and camera_info"),
    "max_frame_age_s": (1.0, "oldest frame (node clock) a query may use"),
    "max_future_stamp_s": (0.5, "a frame stamped more than this ahead of the node clock is refused (clock sync)"),
    "no_input_warning_s": (5.0, "warn when no input has arrived after this long"),
    "detection_prompt": ("", "phrase for continuous detection; '' = every object"),
    "detection_rate_hz": (0.0, "continuous detection rate; 0 = off"),
    "publish_debug_image": (True, "publish ~/debug_image with projected boxes"),
    "target_frame": ("", "frame for results; '' = camera optical frame (tf2_ros needed otherwise)"),
    "tf_timeout_s": (0.2, "how long to wait for a transform at the image stamp"),
    "query_timeout_s": (30.0, "default time limit of one query"),
    "max_queued_queries": (2, "requests in flight at once (waiting for a fresh frame, queued or running); "
                              "more are refused at once with a 'busy' reply"),
    "diagnostics_period_s": (1.0, "period of /diagnostics"),
    "autostart": (False, "configure and activate on start-up"),
    # --- object memory (memory_params.py)
    **MEMORY_PARAMETERS,
}


@dataclass(frozen=True)
class NodeSettings:
    color_topic: str
    depth_topic: str
    camera_info_topic: str
    input_qos: str
    input_qos_depth: int
    sync_slop_s: float
    max_frame_age_s: float
    max_future_stamp_s: float
    no_input_warning_s: float
    detection_prompt: str
    detection_rate_hz: float
    publish_debug_image: bool
    target_frame: str
    tf_timeout_s: float
    query_timeout_s: float
    max_queued_queries: int
    diagnostics_period_s: float
    memory: Optional[MemorySettings] = None  # None: the object memory is off


# name -> (lowest, highest, lowest allowed): finite values in [lowest, highest], or exactly 0 where zero is listed
BOUNDS = {
    "sync_slop_s": (0.0, 1.0, None),
    "max_frame_age_s": (1e-3, 86400.0, None),
    "max_future_stamp_s": (0.0, 3600.0, None),
    "no_input_warning_s": (0.1, 3600.0, None),
    "detection_rate_hz": (1.0 / 3600.0, 100.0, "0 (off)"),
    "tf_timeout_s": (1e-3, 60.0, None),
    "query_timeout_s": (1e-3, 3600.0, None),
    "diagnostics_period_s": (0.01, 3600.0, None),
    **MEMORY_BOUNDS,
}
BOUND_REASONS = {
    "sync_slop_s": "more than 1 s pairs unrelated frames",
    "no_input_warning_s": "it is the input watchdog's period",
    "detection_rate_hz": "it sets a timer period",
    "diagnostics_period_s": "it is a timer period",
}
TOPIC_PARAMETERS = ("color_topic", "depth_topic", "camera_info_topic")


def check_bounds(name: str, value) -> None:
    """InputError unless ``value`` is inside BOUNDS[name] (0 passes where the bounds list it)."""
    lowest, highest, zero = BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"parameter {name} must be a number, got {value!r}")
    if math.isfinite(value) and (lowest <= value <= highest or (zero is not None and value == 0)):
        return
    allowed = f"{zero} or in [{lowest:g}, {highest:g}]" if zero is not None else f"in [{lowest:g}, {highest:g}]"
    reason = BOUND_REASONS.get(name)
    raise InputError(f"parameter {name} must be {allowed}, got {value}" + (f" ({reason})" if reason else ""))


def check_topic(name: str, topic: str, node_name: str, namespace: str) -> None:
    """InputError unless ``topic`` is a valid ROS topic name once expanded (rclpy's own rules)."""
    from rclpy.expand_topic_name import expand_topic_name
    from rclpy.validate_full_topic_name import validate_full_topic_name

    if not topic.strip():
        raise InputError(f"parameter {name} is empty: give the topic name (or remap it)")
    try:
        validate_full_topic_name(expand_topic_name(topic, node_name, namespace))
    except Exception as exc:  # rclpy raises ValueError or InvalidTopicNameException, with rcl's source location
        reason = str(exc).split(", at /")[0].replace("\n", " ")
        raise InputError(f"parameter {name}={topic!r} is not a valid topic name: {reason}") from None


def validate(values: dict, node_name: str = "n3d_node", namespace: str = "/") -> tuple:
    """(PipelineConfig, NodeSettings) from the parameter values, or InputError naming the bad one.

    ``node_name``/``namespace`` expand relative and ``~`` topic names the way the node's subscriptions will."""
    values = dict(values)
    for name, (default, _) in PARAMETERS.items():
        kind = type(default)
        value = values[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            values[name] = value = float(value)
        if kind is list and isinstance(value, (tuple, array.array)):  # rclpy gives arrays as array.array
            values[name] = value = list(value)
        if kind is list and not (isinstance(value, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise InputError(f"parameter {name} must be a list of numbers, got {value!r}")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(f"parameter {name} must be a {kind.__name__}, got {value!r}")
    pipeline = PipelineConfig.from_dict({
        key: values[key] for key in ("backend", "model", "device", "dtype", "quantization", "sampling",
                                     "max_new_tokens", "refine", "min_range_m", "max_range_m",
                                     "prefix_cache", "constrained_decoding", "single_object_stop",
                                     "allow_download", "runtime", "gguf", "gguf_quant")})
    for name in TOPIC_PARAMETERS:
        check_topic(name, values[name], node_name, namespace)
    if len({values[name] for name in TOPIC_PARAMETERS}) != 3:
        raise InputError("color_topic, depth_topic and camera_info_topic must be three different topics")
    if values["input_qos"] not in INPUT_QOS_CHOICES:
        raise InputError(f"parameter input_qos must be one of {list(INPUT_QOS_CHOICES)}, got {values['input_qos']!r}")
    if not 1 <= values["input_qos_depth"] <= 100:
        raise InputError(f"parameter input_qos_depth must be in [1, 100], got {values['input_qos_depth']}")
    for name in BOUNDS:
        check_bounds(name, values[name])
    if not 1 <= values["max_queued_queries"] <= MAX_QUEUED_QUERIES_LIMIT:
        raise InputError(f"parameter max_queued_queries must be in [1, {MAX_QUEUED_QUERIES_LIMIT}], "
                         f"got {values['max_queued_queries']}")
    if len(values["target_frame"]) > MAX_FRAME_ID_CHARS:
        raise InputError(f"parameter target_frame is {len(values['target_frame'])} characters; frame ids are at "
                         f"most {MAX_FRAME_ID_CHARS}")
    memory = validate_memory(values, lambda name, topic: check_topic(name, topic, node_name, namespace))
    settings = NodeSettings(**{name: values[name] for name in NodeSettings.__dataclass_fields__ if name != "memory"},
                            memory=memory)
    return pipeline, settings
