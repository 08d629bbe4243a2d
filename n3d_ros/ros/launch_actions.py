"""launch / launch_ros actions from a LaunchPlan (launch_setup.py): the only code that imports launch.

Every launch file of the package is `generate_launch_description()` = the declared arguments plus one
OpaqueFunction that performs them, makes the plan, and returns these actions.
"""

from __future__ import annotations

from typing import Callable, List

from .launch_setup import Argument, LaunchPlan, plan, rviz_plan

PACKAGE = "n3d_ros"


def _share_dir() -> str:
    from ament_index_python.packages import get_package_share_directory

    return get_package_share_directory(PACKAGE)


def _performed(context, arguments: List[Argument]) -> dict:
    return {a.name: context.launch_configurations.get(a.name, a.default) for a in arguments}


def describe(arguments: List[Argument], setup: Callable):
    """LaunchDescription: DeclareLaunchArgument for each argument, then setup(context) -> actions."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                for a in arguments]
    return LaunchDescription([*declared, OpaqueFunction(function=lambda context: setup(_performed(context, arguments)))])


def node_actions(values: dict, with_camera: bool) -> list:
    """The node (lifecycle driven by launch events), and the camera and RViz when asked for."""
    from launch.actions import EmitEvent, IncludeLaunchDescription, RegisterEventHandler, SetEnvironmentVariable
    from launch.events import matches_action
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import LifecycleNode, Node
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    the_plan: LaunchPlan = plan(values, _share_dir(), with_camera)
    actions: list = [SetEnvironmentVariable(name, value) for name, value in the_plan.environment.items()]
    if the_plan.camera_arguments is not None:
        from ament_index_python.packages import get_package_share_directory

        rs_launch = f"{get_package_share_directory('realsense2_camera')}/launch/rs_launch.py"
        actions.append(IncludeLaunchDescription(PythonLaunchDescriptionSource(rs_launch),
                                                launch_arguments=the_plan.camera_arguments.items()))
    node = LifecycleNode(package=PACKAGE, executable="n3d_node", name=the_plan.node_name,
                         namespace=the_plan.namespace, output="screen",
                         parameters=[the_plan.params_file, the_plan.parameters])
    ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE}

    def request(transition: str):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=ids[transition]))

    if "activate" in the_plan.transitions:
        # Activate once configure has succeeded (configuring -> inactive); a failed configure stays visible.
        actions.append(RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
            entities=[request("activate")])))
    actions.append(node)
    if "configure" in the_plan.transitions:
        actions.append(request("configure"))
    if the_plan.rviz_config is not None:
        actions.append(rviz_node(the_plan.rviz_config))
    return actions


def rviz_node(config_path: str):
    from launch_ros.actions import Node

    return Node(package="rviz2", executable="rviz2", name="n3d_rviz", output="screen",
                arguments=["-d", config_path])


def rviz_actions(values: dict) -> list:
    return [rviz_node(rviz_plan(values, _share_dir()))]
