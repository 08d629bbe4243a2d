"""Parameters, config file, launch files and RViz config agree with the node (launch is not installable here,
so the launch files are checked by reading them)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from n3d_ros.core.types import InputError
from n3d_ros.ros.launch_params import LAUNCH_PARAMETERS, load_defaults
from n3d_ros.ros.params import PARAMETERS, validate

ROOT = Path(__file__).resolve().parents[1]


def _defaults():
    return {name: default for name, (default, _) in PARAMETERS.items()}


def test_config_file_lists_every_parameter_with_the_node_defaults():
    config = load_defaults(str(ROOT / "config" / "n3d.yaml"))
    assert set(config) == set(PARAMETERS)
    for name, value in config.items():
        assert value == PARAMETERS[name][0], name


def test_demo_config_only_names_known_parameters():
    config = load_defaults(str(ROOT / "config" / "tabletop_demo.yaml"))
    assert set(config) <= set(PARAMETERS)
    validate({**_defaults(), **config})


def test_launch_arguments_are_node_parameters_of_the_right_type():
    for name, (kind, _) in LAUNCH_PARAMETERS.items():
        assert name in PARAMETERS, name
        assert isinstance(PARAMETERS[name][0], kind), name


def _launch_calls(path: Path):
    tree = ast.parse(path.read_text())
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _keyword(call, name):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


@pytest.mark.parametrize("launch_file", sorted((ROOT / "launch").glob("*.launch.py")))
def test_launch_files_start_installed_executables(launch_file):
    cmake = (ROOT / "CMakeLists.txt").read_text()
    calls = _launch_calls(launch_file)
    nodes = [c for c in calls if getattr(c.func, "id", None) in ("Node", "LifecycleNode")]
    assert nodes, f"{launch_file.name} starts no node"
    for call in nodes:
        package = ast.literal_eval(_keyword(call, "package"))
        executable = ast.literal_eval(_keyword(call, "executable"))
        if package == "n3d_ros":
            assert (ROOT / "scripts" / executable).exists() and f"scripts/{executable}" in cmake
            assert getattr(call.func, "id") == "LifecycleNode"


def test_realsense_launch_asks_for_aligned_640x480_and_matches_the_default_topics():
    text = (ROOT / "launch" / "n3d_realsense.launch.py").read_text()
    assert '"align_depth.enable": "true"' in text and "640x480x30" in text
    config = load_defaults(str(ROOT / "config" / "n3d.yaml"))
    # The wrapper's default names: /<camera_namespace>/<camera_name>/...
    assert config["depth_topic"] == "/camera/camera/aligned_depth_to_color/image_raw"
    assert config["color_topic"] == "/camera/camera/color/image_raw"
    assert config["camera_info_topic"] == "/camera/camera/color/camera_info"


def test_rviz_config_shows_topics_the_node_publishes():
    rviz = yaml.safe_load((ROOT / "rviz" / "n3d.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d}
    node_source = (ROOT / "n3d_ros" / "ros" / "node.py").read_text()
    published = set(re.findall(r'\("(\w+)", (?:Detection3DArray|Detection2DArray|MarkerArray|Image|SpatialAnswer)\)',
                               node_source))
    for topic in topics:
        if topic.startswith("/n3d_node/"):
            assert topic.split("/")[-1] in published, topic
    assert "/n3d_node/markers" in topics and "/n3d_node/debug_image" in topics


@pytest.mark.parametrize("name,value,fragment", [
    ("backend", "yolo", "backend must be one of"),
    ("input_qos", "fast", "input_qos must be one of"),
    ("sync_slop_s", -0.1, "sync_slop_s must be >= 0"),
    ("max_frame_age_s", 0.0, "max_frame_age_s must be > 0"),
    ("query_timeout_s", float("nan"), "query_timeout_s must be > 0"),
    ("max_queued_queries", 0, "max_queued_queries must be in [1, 64]"),
    ("color_topic", " ", "color_topic is empty"),
    ("depth_topic", "/camera/camera/color/image_raw", "three different topics"),
    ("refine", "yes", "refine must be a bool"),
    ("max_new_tokens", 1.5, "max_new_tokens must be a int"),
])
def test_bad_parameters_are_refused_with_their_name(name, value, fragment):
    values = _defaults()
    values[name] = value
    with pytest.raises(InputError, match=re.escape(fragment)):
        validate(values)


def test_integer_for_a_float_parameter_is_accepted():
    values = _defaults()
    values["max_range_m"] = 6
    pipeline, settings = validate(values)
    assert pipeline.max_range_m == 6.0 and isinstance(pipeline.max_range_m, float)
