"""Do 640x480 colour + depth + camera_info at 30 Hz from another process reach the node? Per DDS transport setting.

For each configuration, in fresh processes on a private DDS domain: the node's process (the real N3DNode,
tabletop backend, its own subscriptions and stamp matcher, counting what arrives) starts first; then a
camera process publishes N frames with realsense2_camera's QoS (images SYSTEM_DEFAULT: reliable, keep last 1,
transient local; camera_info DEFAULT: reliable, keep last 10) once all three of its publishers are matched,
and reports how many it published. Optionally a client process with its own transport setting calls the
node's ~/query service. Prints one row per configuration: published, received per stream, matched sets,
% delivered (matched / published), latency stamp -> node callback (median, p95), CPU per published frame
of each process, and the 1-minute load average when the run started (other work on the machine skews results).

Run: . ci/env.sh && python bench/bench_transport.py [--seconds 20] [--soak] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_data.xml"
COLOR_TOPIC = "/camera/camera/color/image_raw"
DEPTH_TOPIC = "/camera/camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "/camera/camera/color/camera_info"
SEED = 0
# Fast DDS prints XML and transport problems on stderr with these tags; a profile that does not load
# would otherwise silently fall back to the default transports.
ERROR_TAGS = ("Error]", "XMLPARSER", "Warning]", "[rmw_fastrtps")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def middleware() -> str:
    """Fast DDS version as pip sees it (our PyPI ROS wheels); on a distribution install, see `dpkg -l`."""
    from importlib import metadata

    for name in ("ros-fastdds", "ros-fastrtps"):  # Fast DDS 3.x, 2.x
        try:
            return f"Fast DDS {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return f"Fast DDS of ROS_DISTRO={os.environ.get('ROS_DISTRO', '?')}"


def percentile(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# ===================================================================== roles (each its own process)
def role_camera(args) -> int:
    """Publish args.frames frames at args.rate once the node's three subscriptions are matched."""
    import rclpy
    from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data,
                           qos_profile_system_default)
    from sensor_msgs.msg import CameraInfo, Image

    from n3d_ros.core.scene import make_scene
    from n3d_ros.ros import conversions as conv

    rclpy.init()
    node = rclpy.create_node("camera", namespace="/camera")
    if args.camera_qos == "realsense":
        image_qos = qos_profile_system_default
        info_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    else:  # what simulators and some drivers publish
        image_qos = info_qos = qos_profile_sensor_data
    pubs = [node.create_publisher(Image, COLOR_TOPIC, image_qos),
            node.create_publisher(Image, DEPTH_TOPIC, image_qos),
            node.create_publisher(CameraInfo, INFO_TOPIC, info_qos)]
    scene = make_scene(SEED)
    messages = conv.frame_to_msgs(scene.frame, depth_mm=scene.depth_mm)
    deadline = time.monotonic() + 30.0
    while not all(p.get_subscription_count() > 0 for p in pubs):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "the node's subscriptions were not matched within 30 s"}), flush=True)
            return 1
        time.sleep(0.05)
    time.sleep(0.5)  # the readers' side of the match settles too
    period = 1.0 / args.rate
    print("streaming", flush=True)
    start_cpu, start = cpu_s(), time.monotonic()
    published = 0
    for i in range(args.frames):
        # Keep the schedule; when late (a loaded machine) publish at once rather than skip a frame.
        time.sleep(max(0.0, start + i * period - time.monotonic()))
        stamp = node.get_clock().now().to_msg()
        for msg in messages:
            msg.header.stamp = stamp
        for pub, msg in zip(pubs, messages):
            pub.publish(msg)
        published += 1
    elapsed = time.monotonic() - start
    cpu = cpu_s() - start_cpu
    time.sleep(args.linger)  # reliable writers keep repairing lost fragments while we wait
    print(json.dumps({"published": published, "rate_hz": published / max(elapsed, 1e-9),
                      "cpu_ms_per_frame": cpu / max(published, 1) * 1e3,
                      "bytes_per_frame": sum(len(m.data) for m in messages[:2])}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def role_node(args) -> int:
    """The real node (tabletop backend) on the RealSense topics; prints counts when told 'stop' on stdin."""
    import rclpy
    from rclpy.parameter import Parameter

    from n3d_ros.ros.executor import QueuedOnceExecutor
    from n3d_ros.ros.node import N3DNode, executor_threads_for
    from n3d_ros.ros.params import MAX_QUEUED_QUERIES_LIMIT

    rclpy.init()
    node = N3DNode(parameter_overrides=[
        Parameter("backend", value="tabletop"), Parameter("input_qos", value=args.input_qos),
        Parameter("color_topic", value=COLOR_TOPIC), Parameter("depth_topic", value=DEPTH_TOPIC),
        # Long enough for the service check after the camera has stopped.
        Parameter("camera_info_topic", value=INFO_TOPIC), Parameter("max_frame_age_s", value=60.0)])
    executor = QueuedOnceExecutor(num_threads=executor_threads_for(MAX_QUEUED_QUERIES_LIMIT))
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    node.trigger_configure()
    latency_ms: Dict[str, List[float]] = {"color": [], "depth": [], "info": []}
    matcher = node.matcher
    if matcher is not None:  # None: configure failed, reported below
        add = matcher.add

        def timed_add(stream, stamp_ns, message):
            # Every message the node's subscriptions deliver passes here: stamp (camera clock, same host) -> now.
            latency_ms[stream].append((time.time_ns() - stamp_ns) / 1e6)
            return add(stream, stamp_ns, message)

        matcher.add = timed_add
    node.trigger_activate()
    if node.lifecycle != "active":
        print(json.dumps({"error": f"node not active: {node.model_state}"}), flush=True)
        return 1
    print("ready", flush=True)
    start_cpu = cpu_s()
    sys.stdin.readline()  # the orchestrator says when the camera has finished
    cpu = cpu_s() - start_cpu
    counts = {k: node.stats.received(k) for k in ("color", "depth", "info", "matched")}
    print(json.dumps({**counts, "cpu_s": cpu,
                      "latency_ms": {k: [percentile(v, 50), percentile(v, 95)] for k, v in latency_ms.items()}}),
          flush=True)
    executor.shutdown(timeout_sec=5.0)
    node.on_shutdown(None)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def role_client(args) -> int:
    """Call the node's ~/query service args.calls times; print successes and the round-trip median."""
    import rclpy

    from n3d_ros.core.scene import make_scene
    from n3d_ros.srv import SpatialQuery

    rclpy.init()
    node = rclpy.create_node("transport_client")
    client = node.create_client(SpatialQuery, "/n3d_node/query")
    found = client.wait_for_service(timeout_sec=15.0)
    label = make_scene(SEED).objects[0].label
    round_trips, failures = [], []
    for _ in range(args.calls if found else 0):
        t0 = time.perf_counter()
        future = client.call_async(SpatialQuery.Request(query=f"where is the {label}", timeout_s=5.0))
        rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
        if not future.done():
            failures.append("no reply within 10 s")
            continue
        round_trips.append((time.perf_counter() - t0) * 1e3)
        if not future.result().success:
            failures.append(future.result().message)
        time.sleep(0.2)
    print(json.dumps({"service_found": found, "replies": len(round_trips), "calls": args.calls,
                      "failures": failures, "round_trip_ms": percentile(round_trips, 50)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


# ===================================================================== configurations
def large_data() -> Dict[str, str]:
    return {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}


def profiles_file_variable() -> str:
    """Fast DDS 3.x (Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE; 2.x (Humble, Jazzy) only
    FASTRTPS_DEFAULT_PROFILES_FILE, and keeps its defaults silently under the other name. Kilted's rmw honours
    the old name too but warns, so each gets its own. Found by the Fast DDS library on AMENT_PREFIX_PATH."""
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        lib = Path(prefix) / "lib"
        if any(lib.glob("libfastdds.so.3*")):
            return "FASTDDS_DEFAULT_PROFILES_FILE"
        if any(lib.glob("libfastrtps.so.2*")):
            return "FASTRTPS_DEFAULT_PROFILES_FILE"
    raise RuntimeError("no Fast DDS library (libfastdds.so.3 / libfastrtps.so.2) under AMENT_PREFIX_PATH; "
                       "source the ROS 2 setup (. ci/env.sh) first")


def profile(path: Path) -> Dict[str, str]:
    return {profiles_file_variable(): str(path)}


def udp_only_profile(source: Path, directory: Path) -> Path:
    """The profile with its shared-memory transport removed: its UDP fallback on its own."""
    tree = ET.parse(source)
    removed = 0
    for user in [e for e in tree.iter() if e.tag.endswith("userTransports")]:
        for tid in list(user):
            if "shm" in (tid.text or "").lower():
                user.remove(tid)
                removed += 1
    if removed == 0:
        raise RuntimeError(f"{source}: no shared-memory transport_id in userTransports to remove")
    ET.register_namespace("", tree.getroot().tag.split("}")[0].lstrip("{"))
    out = directory / "fastdds_udp_only.xml"
    tree.write(out, xml_declaration=True, encoding="UTF-8")
    return out


@dataclass
class Config:
    name: str
    input_qos: str = "reliable"
    node_env: Dict[str, str] = field(default_factory=dict)
    camera_env: Dict[str, str] = field(default_factory=dict)
    camera_qos: str = "realsense"
    client_env: Optional[Dict[str, str]] = None   # None: no service check


def configurations(xml_profile: Path, scratch: Path) -> List[Config]:
    udp_xml = profile(udp_only_profile(xml_profile, scratch))
    xml = profile(xml_profile)
    only_udp = {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}
    return [
        Config("before: sensor_data, default transports", input_qos="sensor_data"),
        Config("reliable, default transports"),
        Config("best_effort, default transports", input_qos="best_effort"),
        Config("reliable, LARGE_DATA both", node_env=large_data(), camera_env=large_data(), client_env={}),
        Config("reliable, LARGE_DATA node only", node_env=large_data()),
        Config("reliable, LARGE_DATA camera only", camera_env=large_data()),
        Config("best_effort, LARGE_DATA both", input_qos="best_effort", node_env=large_data(),
               camera_env=large_data()),
        Config("reliable, SHM only both", node_env={"FASTDDS_BUILTIN_TRANSPORTS": "SHM"},
               camera_env={"FASTDDS_BUILTIN_TRANSPORTS": "SHM"}),
        Config("reliable, XML profile both", node_env=xml, camera_env=xml, client_env={}),
        Config("reliable, XML profile node only", node_env=xml),
        Config("reliable, XML profile camera only", camera_env=xml),
        Config("reliable, XML via FASTRTPS_ var only", node_env={"FASTRTPS_DEFAULT_PROFILES_FILE": str(xml_profile)},
               camera_env={"FASTRTPS_DEFAULT_PROFILES_FILE": str(xml_profile)}),
        Config("reliable, default, camera async (Humble rmw)", camera_env={"RMW_FASTRTPS_PUBLICATION_MODE": "ASYNCHRONOUS"}),
        Config("reliable, XML both, camera async (Humble rmw)", node_env=xml,
               camera_env={**xml, "RMW_FASTRTPS_PUBLICATION_MODE": "ASYNCHRONOUS"}),
        Config("reliable, UDPv4 only both", node_env=only_udp, camera_env=only_udp),
        Config("reliable, XML UDP large buffers both", node_env=udp_xml, camera_env=udp_xml),
        Config("sim best-effort camera, sensor_data node", input_qos="sensor_data", camera_qos="sensor_data"),
        Config("sim best-effort camera, sensor_data, XML both", input_qos="sensor_data", camera_qos="sensor_data",
               node_env=xml, camera_env=xml),
        Config("service: LARGE_DATA node, UDPv4-only client", node_env=large_data(), camera_env=large_data(),
               client_env=only_udp),
        Config("service: XML node, UDPv4-only client", node_env=xml, camera_env=xml, client_env=only_udp),
    ]


# ===================================================================== orchestration
TRANSPORT_VARS = ("FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE",
                  "RMW_FASTRTPS_USE_QOS_FROM_XML", "RMW_FASTRTPS_PUBLICATION_MODE")


def _env(extra: Dict[str, str], domain: int) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TRANSPORT_VARS}  # the configuration decides these
    env.update(extra)
    env["ROS_DOMAIN_ID"] = str(domain)
    return env


def _spawn(role: List[str], env: Dict[str, str], log, stdin=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve())] + role, env=env, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=log, text=True)


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no result line in {text!r}")


def run_config(config: Config, seconds: float, rate: float, domain: int) -> dict:
    """One configuration in fresh processes; returns the counts (raises on a process that fails)."""
    frames = int(round(seconds * rate))
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as node_log, tempfile.TemporaryFile("w+") as camera_log, \
            tempfile.TemporaryFile("w+") as client_log:
        node = _spawn(["--role", "node", "--input-qos", config.input_qos], _env(config.node_env, domain), node_log,
                      stdin=subprocess.PIPE)
        camera = client = None
        try:
            ready = node.stdout.readline().strip()
            if ready != "ready":
                node_log.seek(0)
                raise RuntimeError(f"node process did not start: {ready!r}; stderr: {node_log.read()[-1500:]}")
            camera = _spawn(["--role", "camera", "--frames", str(frames), "--rate", str(rate),
                             "--camera-qos", config.camera_qos], _env(config.camera_env, domain), camera_log)
            line = camera.stdout.readline().strip()
            if line != "streaming":
                camera_log.seek(0)
                reason = json.loads(line).get("error", line) if line.startswith("{") else f"stderr: {camera_log.read()[-1500:]}"
                raise RuntimeError(f"camera: {reason}")
            camera_out, _ = camera.communicate(timeout=seconds * 3 + 60)
            camera_result = _last_json(camera_out)
            if "error" in camera_result:
                raise RuntimeError(f"camera: {camera_result['error']}")
            # After the camera, so that starting a process does not take CPU from the delivery being counted;
            # the node's last frame stays usable (max_frame_age_s below).
            if config.client_env is not None:
                client = _spawn(["--role", "client"], _env(config.client_env, domain), client_log)
            client_result = _last_json(client.communicate(timeout=60)[0]) if client is not None else None
            node_out, _ = node.communicate("stop\n", timeout=30)
            node_result = _last_json(node_out)
        finally:
            for proc in (camera, client, node):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        problems = []
        for name, log in (("node", node_log), ("camera", camera_log), ("client", client_log)):
            log.seek(0)
            problems += [f"{name}: {line.strip()}" for line in log if any(tag in line for tag in ERROR_TAGS)]
    return {"config": config.name, "load": load, "camera": camera_result, "node": node_result,
            "client": client_result, "problems": problems}


def _fmt_latency(pair) -> str:
    return "-" if pair[0] is None else f"{pair[0]:.1f}/{pair[1]:.1f}"


def print_row(r: dict) -> None:
    cam, node = r["camera"], r["node"]
    published = cam["published"]
    pct = lambda n: 100.0 * n / max(published, 1)  # noqa: E731
    print(f"{r['config'][:46]:<46} {published:>5} {node['color']:>6} {node['depth']:>6} {node['info']:>6} "
          f"{node['matched']:>6} {pct(node['matched']):>7.2f}% {pct(node['color']):>6.1f}% {pct(node['depth']):>6.1f}% "
          f"{_fmt_latency(node['latency_ms']['color']):>11} {cam['rate_hz']:>5.1f} {cam['cpu_ms_per_frame']:>6.1f} "
          f"{node['cpu_s'] / max(published, 1) * 1e3:>6.1f} {r['load']:>5.2f}", flush=True)
    client = r["client"]
    if client is not None:
        print(f"    service from a client process: found={client['service_found']}, replies {client['replies']}/"
              f"{client['calls']}, round trip median {client['round_trip_ms'] or float('nan'):.0f} ms, failures {client['failures'][:2]}")
    for line in r["problems"][:4]:
        print(f"    stderr: {line[:200]}")


HEADER = (f"{'config':<46} {'publ':>5} {'colour':>6} {'depth':>6} {'info':>6} {'sets':>6} {'sets%':>8} "
          f"{'col%':>7} {'dep%':>7} {'lat ms':>11} {'Hz':>5} {'camCPU':>6} {'nodCPU':>6} {'load':>5}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=("camera", "node", "client"), help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--input-qos", default="reliable", help=argparse.SUPPRESS)
    parser.add_argument("--camera-qos", choices=("realsense", "sensor_data"), default="realsense",
                        help=argparse.SUPPRESS)
    parser.add_argument("--linger", type=float, default=2.0, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=20.0, help="publishing time per configuration")
    parser.add_argument("--soak", action="store_true", help="300 s per configuration")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--only", nargs="*", default=[], help="run configurations whose name contains one of these")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile", type=Path, default=PROFILE,
                        help=f"the Fast DDS XML profile the 'XML' configurations load (default {PROFILE})")
    args = parser.parse_args(argv)
    if args.role == "camera":
        return role_camera(args)
    if args.role == "node":
        return role_node(args)
    if args.role == "client":
        return role_client(args)

    seconds = 300.0 if args.soak else args.seconds
    with tempfile.TemporaryDirectory() as scratch:
        chosen = [c for c in configurations(args.profile.resolve(), Path(scratch)) if not args.only or any(s in c.name for s in args.only)]
        if not chosen:
            print(f"no configuration matches {args.only}", file=sys.stderr)
            return 2
        print(f"{seconds:.0f} s at {args.rate:.0f} Hz per configuration, 640x480 rgb8 + 16UC1 + camera_info; "
              f"{os.cpu_count()} CPUs, {middleware()}. sets% = matched sets / published; lat = stamp -> node callback, colour "
              "median/p95; CPU in ms per frame; load = 1-min load average at the start")
        print(HEADER)
        results = []
        domain_base = 200 + os.getpid() % 20
        for n, config in enumerate(chosen * args.repeat):
            try:
                result = run_config(config, seconds, args.rate, domain=domain_base + n % 12)
            except RuntimeError as exc:  # one configuration that cannot communicate is a result too
                print(f"{config.name[:46]:<46} FAILED: {str(exc)[:300]}", flush=True)
                results.append({"config": config.name, "error": str(exc)})
                continue
            results.append(result)
            print_row(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
