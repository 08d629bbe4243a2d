"""Launch behaviour without launch installed: the plan (launch_setup.py) directly, and the launch files' wiring
(launch_actions.py) through recording stand-ins for the launch/launch_ros classes they construct."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from n3d_ros.ros import launch_setup as ls
from n3d_ros.ros.launch_params import LAUNCH_PARAMETERS, load_defaults
from n3d_ros.ros.params import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
SHARE = str(ROOT)  # the source tree has the share layout: config/, rviz/, launch/


def _values(arguments, **given):
    values = {a.name: a.default for a in arguments}
    values.update(given)
    return values


def _realsense(**given):
    return ls.plan(_values(ls.realsense_arguments(), **given), SHARE, with_camera=True)


def _node(**given):
    return ls.plan(_values(ls.node_arguments(), **given), SHARE, with_camera=False)


# ------------------------------------------------------------------------------------------------ lifecycle
def test_default_launch_brings_the_node_to_active_and_turns_its_own_autostart_off():
    for the_plan in (_realsense(), _node()):
        assert the_plan.transitions == ("configure", "activate")
        assert the_plan.parameters["autostart"] is False


@pytest.mark.parametrize("lifecycle,expected", [("inactive", ("configure",)), ("unconfigured", ())])
def test_lifecycle_argument_stops_earlier(lifecycle, expected):
    assert _realsense(lifecycle=lifecycle).transitions == expected


def test_unknown_lifecycle_is_refused_with_the_choices():
    with pytest.raises(ls.LaunchArgumentError, match="lifecycle='on'.*active.*inactive.*unconfigured"):
        _node(lifecycle="on")


# ------------------------------------------------------------------------------------------------ names
def test_default_camera_names_give_the_default_topics_of_the_parameter_file():
    config = load_defaults(str(ROOT / "config" / "n3d.yaml"))
    the_plan = _realsense()
    for name in ("color_topic", "depth_topic", "camera_info_topic"):
        assert the_plan.parameters[name] == config[name] == the_plan.topics[name]
    assert the_plan.camera_arguments["camera_name"] == "camera"
    assert the_plan.camera_arguments["camera_namespace"] == "camera"


def test_camera_name_and_namespace_flow_into_the_topics():
    the_plan = _realsense(camera_name="d435", camera_namespace="robot/head")
    assert the_plan.parameters["color_topic"] == "/robot/head/d435/color/image_raw"
    assert the_plan.parameters["depth_topic"] == "/robot/head/d435/aligned_depth_to_color/image_raw"
    assert the_plan.parameters["camera_info_topic"] == "/robot/head/d435/color/camera_info"
    assert the_plan.camera_arguments["camera_name"] == "d435"
    assert the_plan.camera_arguments["camera_namespace"] == "robot/head"


def test_empty_camera_namespace_is_the_drivers_top_level_layout():
    assert _realsense(camera_namespace="", camera_name="d435").parameters["color_topic"] == "/d435/color/image_raw"


def test_explicit_topics_win_over_camera_names():
    the_plan = _realsense(camera_name="d435", color_topic="/cam/rgb")
    assert the_plan.parameters["color_topic"] == "/cam/rgb"
    assert the_plan.parameters["depth_topic"] == "/camera/d435/aligned_depth_to_color/image_raw"


def test_node_launch_without_camera_names_leaves_topics_to_the_parameter_file(tmp_path):
    params = tmp_path / "mine.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"color_topic": "/mine/rgb"}}}))
    the_plan = _node(params_file=str(params))
    assert "color_topic" not in the_plan.parameters
    assert the_plan.topics["color_topic"] == "/mine/rgb"
    assert _node(params_file=str(params), camera_name="d435").parameters["color_topic"] == \
        "/d435/color/image_raw"


@pytest.mark.parametrize("name,value", [("camera_name", "1bad"), ("camera_name", "d 435"),
                                        ("camera_namespace", "a/b-c"), ("camera_name", "/")])
def test_bad_camera_names_are_refused_naming_the_argument(name, value):
    with pytest.raises(ls.LaunchArgumentError, match=f"launch argument {name}"):
        _realsense(**{name: value})


def test_missing_params_file_is_refused():
    with pytest.raises(ls.LaunchArgumentError, match="params_file.*no such file"):
        _node(params_file="/nonexistent/n3d.yaml")


# ------------------------------------------------------------------------------------------------ driver
def test_profiles_are_set_under_old_new_and_d405_names_and_the_point_cloud_is_off():
    args = _realsense(color_profile="848x480x15").camera_arguments
    for name in ("rgb_camera.profile", "rgb_camera.color_profile", "depth_module.color_profile"):
        assert args[name] == "848x480x15"
    for name in ("depth_module.profile", "depth_module.depth_profile"):
        assert args[name] == "640x480x30"
    assert args["pointcloud.enable"] == "false"
    assert args["align_depth.enable"] == "true" and args["enable_sync"] == "true"
    assert _realsense(pointcloud="true").camera_arguments["pointcloud.enable"] == "true"


def test_node_launch_starts_no_camera():
    assert _node().camera_arguments is None


@pytest.mark.parametrize("value", ["640x480", "640x480x0", "big"])
def test_bad_profile_is_refused(value):
    with pytest.raises(ls.LaunchArgumentError, match="color_profile.*WIDTHxHEIGHTxFPS"):
        _realsense(color_profile=value)


# ------------------------------------------------------------------------------------------------ parameters
def test_launch_arguments_are_node_parameters_of_the_right_type():
    for name, (kind, _) in LAUNCH_PARAMETERS.items():
        assert name in PARAMETERS, name
        assert isinstance(PARAMETERS[name][0], kind), name
    assert "autostart" not in LAUNCH_PARAMETERS


def test_given_parameters_are_typed_and_others_left_to_the_file():
    the_plan = _node(backend="n3d", max_range_m="6", refine="true", target_frame="base_link")
    assert the_plan.parameters["backend"] == "n3d"
    assert the_plan.parameters["max_range_m"] == 6.0 and isinstance(the_plan.parameters["max_range_m"], float)
    assert the_plan.parameters["refine"] is True
    assert the_plan.parameters["target_frame"] == "base_link"
    assert "dtype" not in the_plan.parameters and "query_timeout_s" not in the_plan.parameters


@pytest.mark.parametrize("name,value,fragment", [("max_range_m", "far", "give a number"),
                                                 ("max_range_m", "nan", "finite"),
                                                 ("refine", "maybe", "true or false")])
def test_badly_typed_parameters_are_refused(name, value, fragment):
    with pytest.raises(ls.LaunchArgumentError, match=f"{name}=.*{fragment}"):
        _node(**{name: value})


# ------------------------------------------------------------------------------------------------ RViz, transport
def _rviz(path):
    return yaml.safe_load(Path(path).read_text())["Visualization Manager"]


def test_rviz_is_off_by_default_and_follows_the_names_when_asked():
    assert _realsense().rviz_config is None
    manager = _rviz(_realsense(rviz="true", camera_name="d435", namespace="arm").rviz_config)
    assert manager["Global Options"]["Fixed Frame"] == "d435_color_optical_frame"
    assert manager["Views"]["Current"]["Target Frame"] == "d435_color_optical_frame"
    topics = {d["Name"]: d["Topic"]["Value"] for d in manager["Displays"] if "Topic" in d}
    assert topics["Camera point cloud"] == "/camera/d435/depth/color/points"
    assert topics["N3D boxes and labels"] == "/arm/n3d_node/markers"
    assert topics["N3D debug image"] == "/arm/n3d_node/debug_image"


def test_rviz_default_config_keeps_the_shipped_names():
    shipped = _rviz(ROOT / "rviz" / "n3d.rviz")
    rendered = _rviz(_realsense(rviz="true").rviz_config)
    assert rendered == shipped


def test_rviz_launch_plan_renames_or_takes_a_given_file(tmp_path):
    rendered = _rviz(ls.rviz_plan(_values(ls.rviz_arguments(), camera_name="d405"), SHARE))
    assert rendered["Global Options"]["Fixed Frame"] == "d405_color_optical_frame"
    mine = tmp_path / "mine.rviz"
    mine.write_text("x: 1\n")
    assert ls.rviz_plan(_values(ls.rviz_arguments(), rviz_config=str(mine)), SHARE) == str(mine)
    with pytest.raises(ls.LaunchArgumentError, match="rviz_config"):
        ls.rviz_plan(_values(ls.rviz_arguments(), rviz_config=str(tmp_path / "none.rviz")), SHARE)


def _fastdds_prefix(tmp_path, library):
    lib = tmp_path / library.split(".so")[0] / "lib"
    lib.mkdir(parents=True)
    (lib / library).write_text("")
    return str(lib.parent)


def test_realsense_launch_loads_the_profile_for_camera_and_node_by_default(tmp_path):
    humble = {"AMENT_PREFIX_PATH": f"/nowhere:{_fastdds_prefix(tmp_path, 'libfastrtps.so.2.6.9')}"}
    env = ls.plan(_values(ls.realsense_arguments()), SHARE, with_camera=True, environ=humble).environment
    assert list(env) == ["FASTRTPS_DEFAULT_PROFILES_FILE"]  # Fast DDS 2.x ignores the FASTDDS_ name
    assert Path(env["FASTRTPS_DEFAULT_PROFILES_FILE"]) == ROOT / "config" / "fastdds_large_data.xml"
    kilted = {"AMENT_PREFIX_PATH": _fastdds_prefix(tmp_path, "libfastdds.so.3.2.3")}
    env = ls.plan(_values(ls.realsense_arguments()), SHARE, with_camera=True, environ=kilted).environment
    assert list(env) == ["FASTDDS_DEFAULT_PROFILES_FILE"]
    unknown = ls.plan(_values(ls.realsense_arguments()), SHARE, with_camera=True, environ={}).environment
    assert set(unknown) == set(ls.PROFILES_FILE_VARIABLES)


def test_a_profiles_file_the_user_exported_is_kept():
    mine = {"FASTRTPS_DEFAULT_PROFILES_FILE": "/home/me/fastdds.xml"}
    assert ls.plan(_values(ls.realsense_arguments()), SHARE, with_camera=True, environ=mine).environment == {}


def test_node_launch_leaves_transport_alone_by_default_and_other_choices():
    assert ls.plan(_values(ls.node_arguments()), SHARE, with_camera=False, environ={}).environment == {}
    assert _realsense(transport="default").environment == {}
    assert _realsense(transport="large_data").environment == {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    with pytest.raises(ls.LaunchArgumentError, match="transport='udp'"):
        _realsense(transport="udp")


def test_shipped_profile_is_a_fastdds_profile_with_a_large_shared_memory_segment():
    import xml.etree.ElementTree as ET

    tree = ET.parse(ROOT / "config" / "fastdds_large_data.xml")
    sizes = [int(e.text) for e in tree.iter() if e.tag.endswith("segment_size")]
    assert sizes and min(sizes) >= 4 * 1024 * 1024  # several 0.9 MB frames


# ------------------------------------------------------------------------------------------------ wiring
class _Recorded:
    """Stands in for one launch/launch_ros class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _fake_launch_modules(monkeypatch):
    classes = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "OpaqueFunction", "EmitEvent", "IncludeLaunchDescription",
                           "RegisterEventHandler", "SetEnvironmentVariable"],
        "launch.launch_description_sources": ["PythonLaunchDescriptionSource"],
        "launch_ros": [],
        "launch_ros.actions": ["LifecycleNode", "Node"],
        "launch_ros.event_handlers": ["OnStateTransition"],
        "launch_ros.events": [],
        "launch_ros.events.lifecycle": ["ChangeState"],
    }
    for module_name, names in classes.items():
        module = types.ModuleType(module_name)
        for name in names:
            setattr(module, name, type(name, (_Recorded,), {}))
        monkeypatch.setitem(sys.modules, module_name, module)
    events = types.ModuleType("launch.events")
    events.matches_action = lambda action: ("matches", action)
    monkeypatch.setitem(sys.modules, "launch.events", events)
    index = types.ModuleType("ament_index_python.packages")
    index.get_package_share_directory = lambda package: SHARE if package == "n3d_ros" else f"/opt/{package}"
    monkeypatch.setitem(sys.modules, "ament_index_python", types.ModuleType("ament_index_python"))
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", index)


def _run_launch_file(name, monkeypatch, **given):
    _fake_launch_modules(monkeypatch)
    spec = importlib.util.spec_from_file_location(name, ROOT / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    entities = description.args[0]
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    context = types.SimpleNamespace(launch_configurations={**declared, **given})
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    return declared, opaque.kwargs["function"](context)


def _by_type(actions, name):
    return [a for a in actions if type(a).__name__ == name]


def test_realsense_launch_file_wires_camera_node_and_lifecycle_events(monkeypatch):
    from lifecycle_msgs.msg import Transition

    declared, actions = _run_launch_file("n3d_realsense.launch.py", monkeypatch, camera_name="d435", rviz="true")
    assert {"camera_name", "camera_namespace", "rviz", "lifecycle", "pointcloud", "backend"} <= set(declared)
    (camera,) = _by_type(actions, "IncludeLaunchDescription")
    assert dict(camera.kwargs["launch_arguments"])["camera_name"] == "d435"
    # The transport profile is set before the camera starts: the sender's shared memory is what counts.
    environment = _by_type(actions, "SetEnvironmentVariable")
    assert environment and all(actions.index(e) < actions.index(camera) for e in environment)
    assert {e.args[0] for e in environment} <= set(ls.PROFILES_FILE_VARIABLES)
    assert camera.args[0].args[0] == "/opt/realsense2_camera/launch/rs_launch.py"
    (node,) = _by_type(actions, "LifecycleNode")
    params_file, overrides = node.kwargs["parameters"]
    assert Path(params_file).is_file() and overrides["autostart"] is False
    assert overrides["color_topic"] == "/camera/d435/color/image_raw"
    (handler,) = _by_type(actions, "RegisterEventHandler")
    transition = handler.args[0]
    assert transition.kwargs["target_lifecycle_node"] is node
    assert (transition.kwargs["start_state"], transition.kwargs["goal_state"]) == ("configuring", "inactive")
    (activate,) = transition.kwargs["entities"]
    assert activate.kwargs["event"].kwargs["transition_id"] == Transition.TRANSITION_ACTIVATE
    (configure,) = _by_type(actions, "EmitEvent")
    assert configure.kwargs["event"].kwargs["transition_id"] == Transition.TRANSITION_CONFIGURE
    assert configure.kwargs["event"].kwargs["lifecycle_node_matcher"] == ("matches", node)
    # The handler is registered before the configure request is emitted.
    assert actions.index(handler) < actions.index(configure)
    (rviz,) = _by_type(actions, "Node")
    assert rviz.kwargs["executable"] == "rviz2"
    assert _rviz(rviz.kwargs["arguments"][1])["Global Options"]["Fixed Frame"] == "d435_color_optical_frame"


def test_node_launch_file_unconfigured_requests_no_transition(monkeypatch):
    declared, actions = _run_launch_file("n3d.launch.py", monkeypatch, lifecycle="unconfigured",
                                         transport="large_data")
    assert declared["transport"] == "default"
    assert "pointcloud" not in declared
    assert not _by_type(actions, "EmitEvent") and not _by_type(actions, "RegisterEventHandler")
    assert not _by_type(actions, "IncludeLaunchDescription") and not _by_type(actions, "Node")
    (env,) = _by_type(actions, "SetEnvironmentVariable")
    assert env.args == ("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")


def test_rviz_launch_file_starts_rviz_with_the_renamed_config(monkeypatch):
    _, actions = _run_launch_file("n3d_rviz.launch.py", monkeypatch, camera_name="d405")
    (rviz,) = _by_type(actions, "Node")
    assert _rviz(rviz.kwargs["arguments"][1])["Global Options"]["Fixed Frame"] == "d405_color_optical_frame"


def test_cmake_installs_what_the_launch_files_need():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "install(DIRECTORY launch config rviz" in cmake
    assert (ROOT / "scripts" / "n3d_node").exists() and "scripts/n3d_node" in cmake
