"""The object memory's node parameters (issue 14): declared with the node's (params.PARAMETERS includes these),
validated at configure into MemorySettings. All take effect at configure (runtime_params.py refuses them while
the node is configured): the memory's frame, thresholds and pose subscription are built once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..core.types import InputError
from ..memory import MemoryConfig
POSE_SOURCES = ("tf", "topic", "none")
POSE_TYPES = ("pose", "odometry")

# name -> (default, description); the defaults equal config/n3d.yaml and MemoryConfig's
MEMORY_PARAMETERS = {
    "memory_enabled": (False, "keep an object memory (~/objects, ~/object_memory) fed by detection and queries"),
    "memory_frame": ("odom", "fixed frame the memory is kept in (odom, map, base_link); '' = the camera optical "
                             "frame (a fixed camera; needs memory_pose_source none)"),
    "memory_pose_source": ("tf", "camera pose in the memory frame at the image stamp: tf (tf2), topic "
                                 "(memory_pose_topic) or none (memory_frame is the camera frame)"),
    "memory_pose_topic": ("/camera/pose", "pose topic of the camera optical frame (memory_pose_source topic)"),
    "memory_pose_type": ("pose", "message on memory_pose_topic: pose (geometry_msgs/PoseStamped) or odometry "
                                 "(nav_msgs/Odometry)"),
    "memory_pose_tolerance_s": (0.05, "largest gap between the image stamp and the camera pose's, seconds"),
    "memory_up": ([0.0, 0.0, 1.0], "gravity up in the memory frame, unit vector (a camera frame: e.g. [0, -1, 0] "
                                   "for a level camera)"),
    "memory_max_objects": (200, "objects kept at most; the least recently seen is evicted first"),
    "memory_max_center_distance_m": (0.15, "association: largest centre distance of a re-observed object, metres"),
    "memory_min_iou": (0.25, "association: or at least this 3D overlap (large objects)"),
    "memory_hit_log_odds": (0.85, "confidence gained per detection (log-odds)"),
    "memory_miss_log_odds": (1.4, "confidence lost per frame the object is in view, unoccluded and not detected"),
    "memory_drop_below_confidence": (0.2, "objects whose confidence falls below this (0..0.5) are dropped"),
    "memory_confirm_observations": (2, "objects seen fewer times are tentative (not on ~/objects)"),
    "memory_occlusion_margin_m": (0.03, "depth this far in front of a box counts as an occluder, metres"),
}
# name -> (lowest, highest, zero allowed), checked by params.check_bounds
MEMORY_BOUNDS = {
    "memory_pose_tolerance_s": (1e-4, 60.0, None),
    "memory_max_center_distance_m": (1e-3, 10.0, None),
    "memory_min_iou": (1e-3, 1.0, None),
    "memory_hit_log_odds": (1e-3, 3.0, None),
    "memory_miss_log_odds": (1e-3, 10.0, None),
    "memory_drop_below_confidence": (1e-3, 0.499, None),
    "memory_occlusion_margin_m": (1e-3, 1.0, None),
}
MEMORY_CONFIG_FIELDS = {  # parameter -> MemoryConfig field
    "memory_pose_tolerance_s": "max_pose_offset_s", "memory_max_objects": "max_objects",
    "memory_max_center_distance_m": "max_center_distance_m", "memory_min_iou": "min_iou",
    "memory_hit_log_odds": "hit_log_odds", "memory_miss_log_odds": "miss_log_odds",
    "memory_drop_below_confidence": "drop_below_confidence",
    "memory_confirm_observations": "confirm_observations", "memory_occlusion_margin_m": "occlusion_margin_m",
}
# the memory's frame before the first image names the camera's (memory_frame '')
CAMERA_FRAME_PENDING = "camera_optical_frame_pending"


@dataclass(frozen=True)
class MemorySettings:
    pose_source: str
    pose_topic: str
    pose_type: str
    follow_camera_frame: bool  # memory_frame '': the memory frame is the camera optical frame of the images
    config: MemoryConfig


def validate_memory(values: dict, check_topic) -> Optional[MemorySettings]:
    """MemorySettings from the (type-checked, bounds-checked) values, None when the memory is off; InputError
    naming the parameter otherwise. check_topic(name, topic) validates a topic name."""
    if not values["memory_enabled"]:
        return None
    source, frame = values["memory_pose_source"], values["memory_frame"].strip()
    if source not in POSE_SOURCES:
        raise InputError(f"parameter memory_pose_source must be one of {list(POSE_SOURCES)}, got {source!r}")
    if values["memory_pose_type"] not in POSE_TYPES:
        raise InputError(f"parameter memory_pose_type must be one of {list(POSE_TYPES)}, got "
                         f"{values['memory_pose_type']!r}")
    if not frame and source != "none":
        raise InputError(f"parameter memory_frame is '' (the camera optical frame) but memory_pose_source is "
                         f"{source!r}: a camera frame needs no pose; set memory_pose_source none, or name a fixed "
                         "memory_frame (odom, map, base_link)")
    if source == "topic":
        check_topic("memory_pose_topic", values["memory_pose_topic"])
    up = values["memory_up"]
    if len(up) != 3:
        raise InputError(f"parameter memory_up must be 3 numbers (a unit vector), got {list(up)}")
    if not 1 <= values["memory_max_objects"] <= 100000:
        raise InputError(f"parameter memory_max_objects must be in [1, 100000], got {values['memory_max_objects']}")
    if not 1 <= values["memory_confirm_observations"] <= 1000:
        raise InputError("parameter memory_confirm_observations must be in [1, 1000], got "
                         f"{values['memory_confirm_observations']}")
    settings = {field: values[name] for name, field in MEMORY_CONFIG_FIELDS.items()}
    try:
        config = MemoryConfig(frame_id=frame or CAMERA_FRAME_PENDING, up=tuple(float(v) for v in up),
                              **settings).validated()
    except InputError as exc:  # MemoryConfig names its own fields: say which parameter group they come from
        raise InputError(f"memory parameters (memory_*): {exc}") from None
    return MemorySettings(source, values["memory_pose_topic"], values["memory_pose_type"], not frame, config)
