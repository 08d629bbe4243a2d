"""The node parameters our launch files expose as launch arguments (launch_setup.py builds the rest).

Pure data, so tests can check these names against the node's declared parameters and config/n3d.yaml without
ROS launch installed. `autostart` is not among them: under launch, launch itself drives the lifecycle.
"""

from __future__ import annotations

from pathlib import Path

# name -> (Python type, description). Defaults come from the parameter file the launch file loads.
LAUNCH_PARAMETERS = {
    "backend": (str, "tabletop (model-free), n3d (N3D-VLM) or hispatial (HiSpatial-3B)"),
    "model": (str, "hub id or local checkpoint directory"),
    "device": (str, "auto, cpu, cuda, cuda:N or mps"),
    "dtype": (str, "float32, bfloat16 or float16"),
    "quantization": (str, "'', 4bit or 8bit"),
    "refine": (bool, "refit boxes to the measured depth"),
    "prefix_cache": (bool, "n3d: reuse the image prefill for every question on a frame"),
    "constrained_decoding": (bool, "n3d: constrained, drafted box decoding"),
    "runtime": (str, "n3d: transformers or llamacpp"),
    "gguf": (str, "n3d + llamacpp: GGUF file from n3d export-gguf"),
    "gguf_quant": (str, "'', f32, f16, q8_0 or q4_k_m"),
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
    "memory_enabled": (bool, "keep an object memory (~/objects, ~/object_memory)"),
    "memory_frame": (str, "fixed frame of the object memory (odom, map, base_link); '' = camera optical frame"),
    "memory_pose_source": (str, "camera pose for the memory: tf, topic or none"),
    "memory_pose_topic": (str, "camera pose topic (memory_pose_source topic)"),
}


def load_defaults(params_file: str) -> dict:
    """The ros__parameters of the first node entry in a parameter file."""
    import yaml

    data = yaml.safe_load(Path(params_file).read_text())
    for entry in data.values():
        if isinstance(entry, dict) and "ros__parameters" in entry:
            return dict(entry["ros__parameters"])
    raise ValueError(f"{params_file}: no ros__parameters section")
