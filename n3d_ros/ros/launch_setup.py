"""What our launch files do, as plain Python: arguments, camera names -> topics and frames, RealSense driver
arguments, lifecycle transitions, the RViz config and the DDS transport environment.

The launch files (launch/*.launch.py) only turn a `LaunchPlan` into launch actions inside an OpaqueFunction,
so everything that can be wrong here is tested without `launch`/`launch_ros` installed (they are not
installable in our own environment; on a robot the real ones run these files).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from .launch_params import LAUNCH_PARAMETERS, load_defaults

# Lifecycle bring-up, requested by launch so that launch_ros sees (and OnStateTransition handlers can chain on)
# every transition. The node's own `autostart` parameter is forced off under launch: a node that transitions
# itself does so before launch_ros listens.
LIFECYCLE_TRANSITIONS = {
    "active": ("configure", "activate"),
    "inactive": ("configure",),
    "unconfigured": (),
}

# realsense2_camera 4.x topic layout under /<camera_namespace>/<camera_name>/ and its frame names.
REALSENSE_STREAMS = {
    "color_topic": "color/image_raw",
    "depth_topic": "aligned_depth_to_color/image_raw",
    "camera_info_topic": "color/camera_info",
}
REALSENSE_POINTCLOUD = "depth/color/points"

# Colour/depth profile under every name the driver has used: realsense-ros <= 4.54 reads `rgb_camera.profile` /
# `depth_module.profile`, >= 4.55.1 `rgb_camera.color_profile` / `depth_module.depth_profile`, and a D405 (no RGB
# module) takes colour from `depth_module.color_profile`. rs_launch.py forwards only the names its version
# declares, so the others are ignored rather than refused.
COLOR_PROFILE_NAMES = ("rgb_camera.profile", "rgb_camera.color_profile", "depth_module.color_profile")
DEPTH_PROFILE_NAMES = ("depth_module.profile", "depth_module.depth_profile")

# DDS transport settings for the processes a launch file starts (see config/fastdds_large_data.xml and the
# README's transport section). `default` leaves the environment alone.
TRANSPORT_CHOICES = ("default", "large_data", "profile_file")

_NAME_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROFILE = re.compile(r"^(\d+)x(\d+)x(\d+)$")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class LaunchArgumentError(ValueError):
    """A launch argument that cannot be used; the message names it and says what to give instead."""


# ---------------------------------------------------------------------------------------------- arguments
@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str


def _argument_table(camera_defaults: str, with_camera: bool) -> List[Argument]:
    table = [
        Argument("params_file", "", "parameter file for the node ('' = the package's config/n3d.yaml)"),
        Argument("node_name", "n3d_node", "name of the node"),
        Argument("namespace", "", "namespace of the node"),
        Argument("lifecycle", "active", "state launch brings the node to: active, inactive or unconfigured"),
        Argument("camera_namespace", camera_defaults,
                 "camera namespace (realsense2_camera's camera_namespace); with camera_name it forms the input "
                 "topics /<camera_namespace>/<camera_name>/..." + ("" if with_camera else
                                                                  " ('' here = topics from params_file)")),
        Argument("camera_name", camera_defaults,
                 "camera name (realsense2_camera's camera_name); also the frames <camera_name>_color_optical_frame"),
        Argument("rviz", "false", "also start RViz with the package's config"),
        Argument("rviz_config", "", "RViz config ('' = the package's rviz/n3d.rviz with this launch's names)"),
        Argument("transport", "profile_file" if with_camera else "default",
                 "DDS transport for the processes launched: profile_file (the package's Fast DDS XML profile: "
                 "16 MiB shared memory, large UDP buffers; kept if you exported a profiles file yourself), "
                 "default, or large_data (Fast DDS >= 2.13 builtin large-data transports; every process that "
                 "talks to the node must set it too)" + ("" if with_camera else
                 ". The camera's own process needs the same setting: export it where the driver starts")),
    ]
    if with_camera:
        table += [
            Argument("color_profile", "640x480x30", "colour stream WIDTHxHEIGHTxFPS"),
            Argument("depth_profile", "640x480x30", "depth stream WIDTHxHEIGHTxFPS"),
            Argument("pointcloud", "false", "also publish the camera's point cloud (costs CPU; off by default)"),
        ]
    # Node parameters: '' = not given, the parameter file decides. Topics given here win over camera names.
    table += [Argument(name, "", f"{description} ('' = from params_file)")
              for name, (_, description) in LAUNCH_PARAMETERS.items()]
    return table


def node_arguments() -> List[Argument]:
    """Arguments of n3d.launch.py (the node alone; camera names optional)."""
    return _argument_table(camera_defaults="", with_camera=False)


def realsense_arguments() -> List[Argument]:
    """Arguments of n3d_realsense.launch.py (a RealSense camera and the node)."""
    return _argument_table(camera_defaults="camera", with_camera=True)


def rviz_arguments() -> List[Argument]:
    """Arguments of n3d_rviz.launch.py (RViz alone, next to a running node)."""
    keep = ("node_name", "namespace", "camera_namespace", "camera_name", "rviz_config")
    table = {a.name: a for a in _argument_table(camera_defaults="camera", with_camera=False)}
    return [table[name] for name in keep]


# ---------------------------------------------------------------------------------------------- names
def _clean_namespace(value: str, argument: str, allow_empty: bool = True) -> str:
    """'a/b' from '/a/b/' with each part a valid ROS name token; refuses what would form a bad topic."""
    parts = [part for part in value.strip().strip("/").split("/") if part]
    if not parts and not allow_empty:
        raise LaunchArgumentError(f"launch argument {argument} is empty: give a name such as 'camera'")
    for part in parts:
        if not _NAME_PART.match(part):
            raise LaunchArgumentError(
                f"launch argument {argument}={value!r}: '{part}' is not a valid ROS name (letters, digits and "
                f"'_', not starting with a digit)")
    return "/".join(parts)


def camera_topics(camera_namespace: str, camera_name: str) -> Dict[str, str]:
    """The node's input topics for realsense2_camera's /<camera_namespace>/<camera_name>/... layout."""
    prefix = "/".join(p for p in (_clean_namespace(camera_namespace, "camera_namespace"),
                                  _clean_namespace(camera_name, "camera_name", allow_empty=False)) if p)
    return {parameter: f"/{prefix}/{stream}" for parameter, stream in REALSENSE_STREAMS.items()}


def camera_optical_frame(camera_name: str) -> str:
    return f"{_clean_namespace(camera_name, 'camera_name', allow_empty=False).replace('/', '_')}_color_optical_frame"


def node_topic_prefix(namespace: str, node_name: str) -> str:
    """'/<namespace>/<node_name>', the prefix of the node's private (~/...) topics."""
    ns = _clean_namespace(namespace, "namespace")
    name = _clean_namespace(node_name, "node_name", allow_empty=False)
    if "/" in name:
        raise LaunchArgumentError(f"launch argument node_name={node_name!r} must not contain '/'; use namespace")
    return "/" + "/".join(p for p in (ns, name) if p)


def _profile(value: str, argument: str) -> str:
    match = _PROFILE.match(value.strip())
    if not match or min(int(g) for g in match.groups()) <= 0:
        raise LaunchArgumentError(f"launch argument {argument}={value!r}: give WIDTHxHEIGHTxFPS, e.g. 640x480x30")
    return value.strip()


def _flag(value: str, argument: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise LaunchArgumentError(f"launch argument {argument}={value!r}: give true or false")


# ---------------------------------------------------------------------------------------------- parameters
def typed_parameter(name: str, text: str):
    """A node parameter from its launch-argument text, typed as the node declares it."""
    kind = LAUNCH_PARAMETERS[name][0]
    if kind is bool:
        return _flag(text, name)
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise LaunchArgumentError(f"launch argument {name}={text!r}: give a number") from None
        if not math.isfinite(value):
            raise LaunchArgumentError(f"launch argument {name}={text!r}: give a finite number")
        return value
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise LaunchArgumentError(f"launch argument {name}={text!r}: give an integer") from None
    return text


# ---------------------------------------------------------------------------------------------- the plan
@dataclass
class LaunchPlan:
    params_file: str
    node_name: str
    namespace: str
    parameters: Dict[str, object]          # overrides after params_file (autostart always false)
    transitions: tuple                     # lifecycle transitions launch requests, in order
    environment: Dict[str, str]            # set for every process this launch starts
    camera_arguments: Optional[Dict[str, str]] = None   # rs_launch.py arguments (None: no camera started)
    rviz_config: Optional[str] = None      # path of the RViz config to start RViz with (None: no RViz)
    topics: Dict[str, str] = field(default_factory=dict)  # the node's input topics as they will be


def profiles_file_variables(ament_prefix_path: str) -> tuple:
    """The variable(s) naming a Fast DDS XML profiles file for the Fast DDS of this ROS install.

    Fast DDS 2.x (Humble 2.6, Jazzy 2.14) reads only FASTRTPS_DEFAULT_PROFILES_FILE and silently keeps its
    defaults under the newer name (measured: 83% of frames instead of 100% on 2.14); 3.x (Kilted) reads
    FASTDDS_DEFAULT_PROFILES_FILE and warns that the old one is deprecated. Found by the library on
    AMENT_PREFIX_PATH; both names when neither library is there (another RMW, or an unusual install).
    """
    for prefix in filter(None, ament_prefix_path.split(":")):
        lib = Path(prefix) / "lib"
        if any(lib.glob("libfastdds.so.3*")):
            return ("FASTDDS_DEFAULT_PROFILES_FILE",)
        if any(lib.glob("libfastrtps.so.2*")):
            return ("FASTRTPS_DEFAULT_PROFILES_FILE",)
    return ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


PROFILES_FILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def transport_environment(transport: str, profile_file: str, environ: Mapping[str, str]) -> Dict[str, str]:
    """Variables to set for every process a launch file starts (the camera driver's included: the sender's
    shared-memory segment is what must hold a 0.9 MB frame, so the profile in the node alone changes nothing).

    A profiles file the user already exported is kept: theirs may configure more than transports.
    """
    if transport == "default":
        return {}
    if transport == "large_data":
        # Every process that talks to the node must set it too: measured, a camera without it never matched
        # and a default-configured client did not find the node's service.
        return {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    if transport == "profile_file":
        if any(environ.get(name) for name in PROFILES_FILE_VARIABLES):
            return {}
        return {name: profile_file for name in profiles_file_variables(environ.get("AMENT_PREFIX_PATH", ""))}
    raise LaunchArgumentError(f"launch argument transport={transport!r}: give one of {list(TRANSPORT_CHOICES)}")


def plan(values: Dict[str, str], share_dir: str, with_camera: bool,
         environ: Optional[Mapping[str, str]] = None) -> LaunchPlan:
    """The launch plan from the performed launch arguments (all text). share_dir: the package's share dir;
    environ: the environment launch runs in (default: os.environ)."""
    share = Path(share_dir)
    params_file = values.get("params_file", "").strip() or str(share / "config" / "n3d.yaml")
    if not Path(params_file).is_file():
        raise LaunchArgumentError(f"launch argument params_file={params_file!r}: no such file")
    file_values = load_defaults(params_file)

    lifecycle = values.get("lifecycle", "active").strip()
    if lifecycle not in LIFECYCLE_TRANSITIONS:
        raise LaunchArgumentError(f"launch argument lifecycle={lifecycle!r}: give one of "
                                  f"{list(LIFECYCLE_TRANSITIONS)}")

    parameters: Dict[str, object] = {}
    for name in LAUNCH_PARAMETERS:
        text = values.get(name, "")
        if text != "":
            parameters[name] = typed_parameter(name, text)
    camera_namespace = values.get("camera_namespace", "")
    camera_name = values.get("camera_name", "")
    derived = {}
    if with_camera or camera_name.strip() or camera_namespace.strip():
        derived = camera_topics(camera_namespace, camera_name or "camera")
    for parameter, topic in derived.items():
        parameters.setdefault(parameter, topic)
    parameters["autostart"] = False
    topics = {name: parameters.get(name, file_values.get(name, "")) for name in REALSENSE_STREAMS}

    node_name = values.get("node_name", "n3d_node")
    namespace = values.get("namespace", "")
    prefix = node_topic_prefix(namespace, node_name)

    camera_arguments = None
    if with_camera:
        color = _profile(values.get("color_profile", "640x480x30"), "color_profile")
        depth = _profile(values.get("depth_profile", "640x480x30"), "depth_profile")
        camera_arguments = {
            "camera_namespace": _clean_namespace(camera_namespace, "camera_namespace"),
            "camera_name": _clean_namespace(camera_name or "camera", "camera_name", allow_empty=False),
            "align_depth.enable": "true",
            "enable_sync": "true",
            "pointcloud.enable": "true" if _flag(values.get("pointcloud", "false"), "pointcloud") else "false",
            **{name: color for name in COLOR_PROFILE_NAMES},
            **{name: depth for name in DEPTH_PROFILE_NAMES},
        }

    rviz_config = None
    if _flag(values.get("rviz", "false"), "rviz"):
        rviz_config = values.get("rviz_config", "").strip() or write_rviz_config(
            share / "rviz" / "n3d.rviz", fixed_frame=camera_optical_frame(camera_name or "camera"),
            node_prefix=prefix, pointcloud_topic=_pointcloud_topic(camera_namespace, camera_name or "camera"))

    environment = transport_environment(values.get("transport", "default").strip(),
                                        str(share / "config" / "fastdds_large_data.xml"),
                                        os.environ if environ is None else environ)
    return LaunchPlan(params_file=params_file, node_name=node_name, namespace=namespace, parameters=parameters,
                      transitions=LIFECYCLE_TRANSITIONS[lifecycle], environment=environment,
                      camera_arguments=camera_arguments, rviz_config=rviz_config, topics=topics)


def _pointcloud_topic(camera_namespace: str, camera_name: str) -> str:
    return camera_topics(camera_namespace, camera_name)["color_topic"].replace(
        REALSENSE_STREAMS["color_topic"], REALSENSE_POINTCLOUD)


# ---------------------------------------------------------------------------------------------- RViz
# Names in rviz/n3d.rviz that follow the launch's names (the file is written for the defaults).
RVIZ_DEFAULT_FRAME = "camera_color_optical_frame"
RVIZ_DEFAULT_NODE_PREFIX = "/n3d_node"
RVIZ_DEFAULT_POINTCLOUD = "/camera/camera/" + REALSENSE_POINTCLOUD


def rviz_config_text(template: str, fixed_frame: str, node_prefix: str, pointcloud_topic: str) -> str:
    """rviz/n3d.rviz with the fixed frame, the node's topics and the camera's point cloud renamed."""
    import yaml

    config = yaml.safe_load(template)
    manager = config["Visualization Manager"]
    manager["Global Options"]["Fixed Frame"] = fixed_frame
    manager["Views"]["Current"]["Target Frame"] = fixed_frame
    for display in manager["Displays"]:
        topic = display.get("Topic")
        if not topic:
            continue
        value = topic["Value"]
        if value == RVIZ_DEFAULT_POINTCLOUD:
            topic["Value"] = pointcloud_topic
        elif value.startswith(RVIZ_DEFAULT_NODE_PREFIX + "/"):
            topic["Value"] = node_prefix + value[len(RVIZ_DEFAULT_NODE_PREFIX):]
    return yaml.safe_dump(config, sort_keys=False)


def write_rviz_config(template_path: Path, fixed_frame: str, node_prefix: str, pointcloud_topic: str) -> str:
    """Write the renamed config to a temporary file (kept: RViz reads it after launch returns)."""
    text = rviz_config_text(Path(template_path).read_text(), fixed_frame, node_prefix, pointcloud_topic)
    with tempfile.NamedTemporaryFile("w", prefix="n3d_", suffix=".rviz", delete=False) as out:
        out.write(text)
    return out.name


def rviz_plan(values: Dict[str, str], share_dir: str) -> str:
    """The RViz config for n3d_rviz.launch.py: the given file, or ours renamed for the node and camera."""
    given = values.get("rviz_config", "").strip()
    if given:
        if not Path(given).is_file():
            raise LaunchArgumentError(f"launch argument rviz_config={given!r}: no such file")
        return given
    camera_namespace, camera_name = values.get("camera_namespace", "camera"), values.get("camera_name", "camera")
    return write_rviz_config(Path(share_dir) / "rviz" / "n3d.rviz",
                             fixed_frame=camera_optical_frame(camera_name or "camera"),
                             node_prefix=node_topic_prefix(values.get("namespace", ""),
                                                           values.get("node_name", "n3d_node")),
                             pointcloud_topic=_pointcloud_topic(camera_namespace, camera_name or "camera"))
