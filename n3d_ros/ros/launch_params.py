"""The node parameters our launch files expose as launch arguments, and the helpers that declare them.

Pure data at import time (the `launch` packages are imported only inside the helpers), so tests can check
these names against the node's declared parameters and config/n3d.yaml without ROS launch installed.
"""

from __future__ import annotations

from pathlib import Path

# name -> (Python type, description). Defaults come from the parameter file the launch file loads.
LAUNCH_PARAMETERS = {
    "backend": (str, "tabletop (model-free) or n3d (N3D-VLM)"),
    "model": (str, "hub id or local checkpoint directory"),
    "device": (str, "auto, cpu, cuda, cuda:N or mps"),
    "dtype": (str, "float32, bfloat16 or float16"),
    "quantization": (str, "'', 4bit or 8bit"),
    "refine": (bool, "refit boxes to the measured depth"),
    "prefix_cache": (bool, "n3d: reuse the image prefill for every question on a frame"),
    "constrained_decoding": (bool, "n3d: constrained, drafted box decoding"),
    "min_range_m": (float, "nearest valid depth in metres"),
    "max_range_m": (float, "farthest valid depth in metres"),
    "color_topic": (str, "colour image topic"),
    "depth_topic": (str, "depth image topic, aligned to colour"),
    "camera_info_topic": (str, "colour camera_info topic"),
    "input_qos": (str, "sensor_data, reliable or best_effort"),
    "sync_slop_s": (float, "largest stamp difference between colour, depth and camera_info"),
    "max_frame_age_s": (float, "oldest frame a query may be answered on"),
    "detection_prompt": (str, "phrase for continuous detection; '' = every object"),
    "detection_rate_hz": (float, "continuous detection rate; 0 = off"),
    "target_frame": (str, "frame for results; '' = camera optical frame"),
    "query_timeout_s": (float, "default time limit of one query"),
    "autostart": (bool, "configure and activate on start-up"),
}


def load_defaults(params_file: str) -> dict:
    """The ros__parameters of the first node entry in a parameter file."""
    import yaml

    data = yaml.safe_load(Path(params_file).read_text())
    for entry in data.values():
        if isinstance(entry, dict) and "ros__parameters" in entry:
            return dict(entry["ros__parameters"])
    raise ValueError(f"{params_file}: no ros__parameters section")


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def declare_arguments(params_file: str) -> list:
    """DeclareLaunchArgument for every parameter above, defaulting to the parameter file's values."""
    from launch.actions import DeclareLaunchArgument

    defaults = load_defaults(params_file)
    return [DeclareLaunchArgument(name, default_value=_as_text(defaults.get(name, "")), description=description)
            for name, (_, description) in LAUNCH_PARAMETERS.items()]


def node_parameters(params_file: str) -> list:
    """The parameter file, then one override per launch argument (typed, so '' stays a string)."""
    from launch.substitutions import LaunchConfiguration
    from launch_ros.parameter_descriptions import ParameterValue

    overrides = {name: ParameterValue(LaunchConfiguration(name), value_type=kind)
                 for name, (kind, _) in LAUNCH_PARAMETERS.items()}
    return [params_file, overrides]
