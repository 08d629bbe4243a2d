"""Parameters, config file and RViz config agree with the node (the launch files: test_ros_launch.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from n3d_ros.core.types import InputError
from n3d_ros.ros.launch_params import load_defaults
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


def test_rviz_config_shows_topics_the_node_publishes():
    rviz = yaml.safe_load((ROOT / "rviz" / "n3d.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d}
    node_source = "\n".join(path.read_text() for path in sorted((ROOT / "n3d_ros" / "ros").glob("*.py")))
    kinds = "Detection3DArray|Detection2DArray|MarkerArray|Image|SpatialAnswer"
    published = set(re.findall(rf'\("(\w+)", (?:{kinds})\)', node_source))  # outputs.py's (name, type) table
    published |= set(re.findall(rf'create_publisher\((?:{kinds}), "~/(\w+)"', node_source))
    for topic in topics:
        if topic.startswith("/n3d_node/"):
            assert topic.split("/")[-1] in published, topic
    assert "/n3d_node/markers" in topics and "/n3d_node/debug_image" in topics


@pytest.mark.parametrize("name,value,fragment", [
    ("backend", "yolo", "backend must be one of"),
    ("input_qos", "fast", "input_qos must be one of"),
    ("sync_slop_s", -0.1, "sync_slop_s must be in [0, 1]"),
    ("max_frame_age_s", 0.0, "max_frame_age_s must be in [0.001, 86400]"),
    ("query_timeout_s", float("nan"), "query_timeout_s must be in [0.001, 3600]"),
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
