"""Shared pytest fixtures. The ROS ones import rclpy lazily so that the pure-core tests need no ROS."""

from __future__ import annotations

import os
import threading

import pytest

# A DDS domain of our own per test run: tests on the same machine (other runs, other users) must not see
# each other's nodes and services. Override with N3D_TEST_ROS_DOMAIN_ID.
ROS_DOMAIN_ID = int(os.environ.get("N3D_TEST_ROS_DOMAIN_ID", 1 + os.getpid() % 100))


def _require_ros_environment():
    try:
        import rclpy
        import n3d_ros.srv  # noqa: F401  generated only in the colcon install space
    except ImportError as exc:
        pytest.fail(f"ROS test needs rclpy and the built n3d_ros interfaces ({exc}); run `make test`, or "
                    "`. ci/env.sh && pytest test/...` (not `python -m pytest` from the repository root, which "
                    "imports the source n3d_ros without its generated interfaces)", pytrace=False)
    return rclpy


@pytest.fixture
def ros_context():
    """An initialised rclpy context on this run's private domain; shut down after the test."""
    rclpy = _require_ros_environment()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ROS_DOMAIN_ID)
    yield context
    context.try_shutdown()


@pytest.fixture
def ros_executor(ros_context):
    """A multi-threaded executor spinning in a background thread; add nodes to it."""
    from n3d_ros.ros.executor import QueuedOnceExecutor

    executor = QueuedOnceExecutor(num_threads=4, context=ros_context)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield executor
    executor.shutdown(timeout_sec=5.0)
    thread.join(timeout=5.0)
