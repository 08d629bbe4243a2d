"""Full-size camera frames from another process reach the node over real DDS with the shipped Fast DDS profile.

Each test runs the node (its real subscriptions and stamp matcher, tabletop backend) and a camera that
publishes 640x480 rgb8 + 16UC1 + camera_info at 30 Hz with realsense2_camera's QoS in processes of their own,
through bench/bench_transport.py (the benchmark that compares transport settings over longer runs). With
Fast DDS's default transports a fifth to a quarter of the 0.9 MB colour frames never arrive here; with
config/fastdds_large_data.xml loaded in both processes practically none are lost (figures below).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import ROS_DOMAIN_ID

ROOT = Path(__file__).resolve().parents[1]
SECONDS, RATE_HZ = 5.0, 30.0
# Measured with bench_transport on this 2-core machine: with the profile, 99.93% of sets over 300 s (load 12)
# and 97.3-100% in 5 s runs at load 18-23, the losses coming with CPU starvation (latency p95 up to 65 ms);
# with the default transports 73-82% of reliable sets and 18% of best-effort ones. 95% holds on a loaded CI
# machine and still fails a profile that did not take effect.
MIN_DELIVERED = 0.95


@pytest.fixture(scope="module")
def bench():
    _require_ros()
    spec = importlib.util.spec_from_file_location("bench_transport", ROOT / "bench" / "bench_transport.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def _require_ros():
    try:
        import rclpy  # noqa: F401
        import n3d_ros.srv  # noqa: F401  generated only in the colcon install space
    except ImportError as exc:
        pytest.fail(f"needs rclpy and the built n3d_ros interfaces ({exc}); run `. ci/env.sh` first", pytrace=False)


def _run(bench, config, domain_offset):
    # Its own domain: the node in these processes is /n3d_node too, like the nodes of other tests.
    result = bench.run_config(config, SECONDS, RATE_HZ, domain=100 + (ROS_DOMAIN_ID + domain_offset) % 100)
    assert not result["problems"], f"Fast DDS/rmw complained (the profile may not have loaded): {result['problems']}"
    published, node = result["camera"]["published"], result["node"]
    assert published == int(SECONDS * RATE_HZ), result
    return published, node, result


def test_profile_delivers_every_reliable_frame_and_a_default_process_still_calls_the_service(bench):
    profile = bench.profile(bench.PROFILE)
    config = bench.Config("profile both sides", input_qos="reliable", node_env=profile, camera_env=profile,
                          client_env={})  # the client process: Fast DDS defaults, like a plain `ros2 service call`
    published, node, result = _run(bench, config, 0)
    for stream in ("color", "depth", "info"):
        assert node[stream] >= MIN_DELIVERED * published, (stream, result)
    assert node["matched"] >= MIN_DELIVERED * published, result
    client = result["client"]
    assert client["service_found"] and client["replies"] == client["calls"] and not client["failures"], client


def test_profile_also_carries_a_best_effort_camera(bench):
    """Simulators publish best effort; input_qos: sensor_data receives them, and the profile's shared-memory
    segment keeps the large frames whole (best effort has no repair, so losses show directly)."""
    profile = bench.profile(bench.PROFILE)
    config = bench.Config("best-effort camera", input_qos="sensor_data", camera_qos="sensor_data",
                          node_env=profile, camera_env=profile)
    published, node, result = _run(bench, config, 1)
    assert node["matched"] >= MIN_DELIVERED * published, result
