"""The n3d lifecycle node: RGB-D in, 3D detections and spatial answers out. This module is the lifecycle shell;
the jobs live in inputs.py (subscriptions, watchdog, usable frames), queries.py (~/query service and action),
detection.py (background detection), outputs.py (publishers), runtime_params.py (live parameter changes) and
memory_node.py (the object memory: ~/objects, ~/object_memory, fed by detection and queries).
Data flows one way: the shell owns the state (settings, pipeline, worker, matcher, tf) and the parts read it.

configure: validate parameters, load the backend (the model), create publishers.
activate: subscribe to colour, depth and camera_info; start background detection and the input watchdog.
deactivate: stop subscriptions and timers (frees cached GPU blocks). cleanup: close the pipeline (frees the model).
The ~/query service and action exist in every state and always answer (with a reason when they cannot).
A transition that fails logs its cause, naming the parameter, and later query replies repeat it.

Threads: sensor callbacks only store messages (stamp matching); one inference thread (worker.py) runs the
model; service/action callbacks wait for it on executor threads, so run this node in a multi-threaded executor
(main() uses executor.QueuedOnceExecutor, rclpy's MultiThreadedExecutor without its hot loop).
Each request in flight (waiting for a fresh frame, queued or running) holds one executor thread; at most
max_queued_queries are in flight, further ones are refused at once, and the executor has
RESERVED_EXECUTOR_THREADS more threads than that, so sensor and timer callbacks always get one.
"""

from __future__ import annotations

import time
import traceback
from typing import Callable, Optional

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn

from diagnostic_msgs.msg import DiagnosticArray, KeyValue
from std_msgs.msg import Header

from ..core.types import InputError
from ..pipeline import Pipeline
from .detection import BackgroundDetection
from .diagnostics import NodeStats
from .inputs import InputStreams
from .memory_node import MemoryService, make_feed
from .freed_memory import release_freed_memory
from .outputs import RELIABLE, Outputs
from .params import MAX_QUEUED_QUERIES_LIMIT, PARAMETERS, check_bounds, validate
from .queries import QueryServer
from .runtime_params import refusal
from .sync import StampMatcher
from .throttled_log import ThrottledLog
from .worker import InferenceWorker

# Executor threads never held by a request in flight: the sensor group, the timer group, and short-lived
# work (refusals, action goal/cancel/result callbacks, lifecycle and parameter services).
RESERVED_EXECUTOR_THREADS = 4
CALLBACK_ERROR_LOG_PERIOD_S = 5.0
DEFAULT_DIAGNOSTICS_PERIOD_S = 1.0


def executor_threads_for(max_in_flight: int) -> int:
    """Threads a MultiThreadedExecutor needs so that max_in_flight blocked requests cannot starve sensors."""
    return int(max_in_flight) + RESERVED_EXECUTOR_THREADS


def _watchdog_period(settings) -> float:
    # Twice per no_input_warning_s: a stream that stops is reported within 1.5 x that time.
    return min(settings.no_input_warning_s / 2.0, 1.0)


class N3DNode(LifecycleNode):
    def __init__(self, node_name: str = "n3d_node", **kwargs):
        super().__init__(node_name, **kwargs)
        for name, (default, description) in PARAMETERS.items():
            # dynamic typing: a YAML 1 for a float parameter is accepted and checked at configure instead.
            self.declare_parameter(name, default, ParameterDescriptor(description=description, dynamic_typing=True))
        self.stats = NodeStats()
        self.log = ThrottledLog(self.get_logger())
        self.pipeline: Optional[Pipeline] = None
        self.settings = None
        self.worker: Optional[InferenceWorker] = None
        self.matcher: Optional[StampMatcher] = None
        self.tf = None
        self.tf_missing = ""  # why there is no TF listener ('' when there is one)
        self.memory_feed = None  # memory_io.MemoryFeed while configured with memory_enabled
        self.lifecycle = "unconfigured"
        self.model_state = "not loaded"
        self.last_error = ""  # the cause of the latest failed transition, repeated in replies until activation
        # Threads of the executor spinning this node when known (main() sets it); configure checks
        # max_queued_queries against it.
        self.executor_threads: Optional[int] = None
        self.stop_timeout_s = 30.0  # how long cleanup waits for a running job to stop before giving up on it
        self._callback_errors_logged = {}  # callback name -> monotonic time of its last error log
        self._activation_timers = {}  # name -> timer, while active (not _timers: rclpy.Node's own list)
        self.sensor_group = MutuallyExclusiveCallbackGroup()
        self._background = MutuallyExclusiveCallbackGroup()
        self.inputs = InputStreams(self, self.stats, self.log, self._guarded)
        self.outputs = Outputs(self, self.log)
        self.detection = BackgroundDetection(self, self.log)
        self.queries = QueryServer(self, self.log)
        self.memory_service = MemoryService(self)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        self._diagnostics_timer = self.create_timer(self._initial_diagnostics_period(),
                                                    self._guarded("diagnostics", self._publish_diagnostics),
                                                    callback_group=self._background)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.get_parameter("autostart").value is True:
            self._autostart_timer = self.create_timer(0.0, self._guarded("autostart", self._autostart),
                                                      callback_group=self._background)

    @property
    def _input_subscriptions(self):
        return self.inputs.subscriptions

    @property
    def _frame_cache(self):
        """(matched set, RGBDFrame) the latest query or detection used (tests read the decoded frame here)."""
        return self.inputs.frame_cache

    def _initial_diagnostics_period(self) -> float:
        period = self.get_parameter("diagnostics_period_s").value
        try:
            check_bounds("diagnostics_period_s", period)
        except InputError as exc:  # start-up must not die on it (rclpy's timer overflows); configure refuses it
            self.get_logger().error(f"{exc}; publishing /diagnostics every {DEFAULT_DIAGNOSTICS_PERIOD_S} s")
            return DEFAULT_DIAGNOSTICS_PERIOD_S
        return float(period)

    def _guarded(self, name: str, callback: Callable) -> Callable:
        """Wrap a timer/subscription callback: the executor re-raises callback exceptions and that ends spin,
        so an exception is logged (at most once per CALLBACK_ERROR_LOG_PERIOD_S per callback) and counted."""
        def run(*args):
            try:
                return callback(*args)
            except Exception as exc:  # the node never dies on one bad message or a lifecycle race
                self.stats.count("callback_errors")
                now = time.monotonic()
                last = self._callback_errors_logged.get(name)
                if last is None or now - last >= CALLBACK_ERROR_LOG_PERIOD_S:
                    self._callback_errors_logged[name] = now
                    self.get_logger().error(f"{name} callback failed: {type(exc).__name__}: {exc}\n"
                                            f"{traceback.format_exc()}")
                return None
        return run

    def destroy_node(self) -> None:
        self.queries.destroy()
        super().destroy_node()

    # ================================================================== lifecycle
    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def _parameter_values(self) -> dict:
        return {name: self.get_parameter(name).value for name in PARAMETERS}

    def _capacity_error(self, settings) -> Optional[str]:
        needed = executor_threads_for(settings.max_queued_queries)
        if self.executor_threads is None or needed <= self.executor_threads:
            return None
        return (f"parameter max_queued_queries={settings.max_queued_queries} needs {needed} executor threads "
                f"({RESERVED_EXECUTOR_THREADS} kept for sensors and timers) but the executor has "
                f"{self.executor_threads}; use at most {self.executor_threads - RESERVED_EXECUTOR_THREADS}")

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        # rclpy turns an exception in a transition callback into a silent ERROR: say what it was instead.
        try:
            return self._configure()
        except Exception as exc:  # ERROR: rclpy then runs on_error, which releases what was made
            return self._transition_failed(f"configure failed: {type(exc).__name__}: {exc}",
                                           TransitionCallbackReturn.ERROR)

    def _configure(self) -> TransitionCallbackReturn:
        values = self._parameter_values()
        tf = feed = None
        try:
            pipeline_config, settings = validate(values, self.get_name(), self.get_namespace())
            capacity = self._capacity_error(settings)
            if capacity:
                raise InputError(capacity)
            # Before the model loads: the TF buffer then holds history at the stamps of the first images.
            tf = self._start_tf(required=bool(settings.target_frame))
            feed = make_feed(self, settings, tf)
            self.model_state = "loading"
            started = time.monotonic()
            pipeline = Pipeline.from_config(pipeline_config)
        except InputError as exc:
            self._close_feed(feed)
            self._close_tf(tf)
            return self._transition_failed(f"configure refused: {exc}")
        except Exception as exc:  # a model that fails to load must leave the node alive and saying why
            self._close_feed(feed)
            self._close_tf(tf)
            return self._transition_failed(f"configure failed loading the {values['backend']} backend: "
                                           f"{type(exc).__name__}: {exc}")
        self.tf, self.pipeline, self.settings, self.memory_feed = tf, pipeline, settings, feed
        self.model_state = f"loaded ({pipeline_config.backend}, {time.monotonic() - started:.1f} s)"
        self.matcher = StampMatcher(int(settings.sync_slop_s * 1e9), on_time_jump=self._on_time_jump)
        self.worker = InferenceWorker(settings.max_queued_queries, logger=self.get_logger())
        self.outputs.create()
        self.lifecycle = "inactive"
        self.last_error = ""
        self.get_logger().info(f"configured: {self.model_state}; inputs {settings.color_topic}, "
                               f"{settings.depth_topic}, {settings.camera_info_topic} ({settings.input_qos} QoS)")
        return TransitionCallbackReturn.SUCCESS

    def _start_tf(self, required: bool):
        """A TF listener whenever tf2_ros is importable (per-request target frames need its history);
        InputError when it is missing but required (the target_frame parameter is set). Only configure
        creates it (lifecycle transitions run one at a time); request threads read self.tf once into a local."""
        from .tf import TfLookup

        try:
            tf = TfLookup(self)
        except InputError as exc:
            if required:
                raise
            self.tf_missing = str(exc)
            return None
        self.tf_missing = ""
        return tf

    @staticmethod
    def _close_feed(feed) -> None:
        if feed is not None:  # forgets the objects and drops ~/objects and the pose subscription
            feed.close()

    @staticmethod
    def _close_tf(tf) -> None:
        if tf is not None:
            tf.close()

    def _on_time_jump(self, previous_ns: int, new_ns: int) -> None:
        self.stats.count("time_jumps")
        self.log.warning("time jump", f"input stamps went back in time by {(previous_ns - new_ns) / 1e9:.1f} s (bag "
                         "loop, sim-time reset, or an earlier frame stamped in the future); dropped the frames from "
                         "before the jump", 5.0)

    def _transition_failed(self, message: str, code=TransitionCallbackReturn.FAILURE) -> TransitionCallbackReturn:
        if code == TransitionCallbackReturn.FAILURE:
            self.model_state = f"error: {message}"
        self.last_error = message
        self.get_logger().error(message)
        return code

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        try:
            s = self.settings
            self.inputs.start(s, self.matcher)
            self._start_activation_timers(s)
        except Exception as exc:
            self._stop_processing()
            cause = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            # ERROR: rclpy then runs on_error, which releases the model; the cause stays in last_error.
            return self._transition_failed(f"activate failed: {cause}", TransitionCallbackReturn.ERROR)
        self.detection.reset()
        self.lifecycle = "active"
        self.last_error = ""
        return TransitionCallbackReturn.SUCCESS

    def _start_activation_timers(self, s) -> None:
        self._replace_timer("input watchdog", "no_input_warning_s", _watchdog_period(s), self.inputs.check)
        self._replace_timer("detection timer", "detection_rate_hz",
                            1.0 / s.detection_rate_hz if s.detection_rate_hz > 0 else None, self.detection.tick)

    def _replace_timer(self, name: str, parameter: str, period_s: Optional[float], callback: Callable) -> None:
        """(Re)create one activation timer (None: none); InputError naming the parameter if rclpy refuses."""
        old = self._activation_timers.pop(name, None)
        if old is not None:
            old.cancel()
            self.destroy_timer(old)
        if period_s is None:
            return
        try:
            self._activation_timers[name] = self.create_timer(period_s, self._guarded(name, callback),
                                                              callback_group=self._background)
        except Exception as exc:
            raise InputError(f"creating the {name} from {parameter} (period {period_s:g} s) failed: "
                             f"{type(exc).__name__}: {exc}") from exc

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.lifecycle = "inactive"
        self._stop_processing()
        release_freed_memory()
        return TransitionCallbackReturn.SUCCESS

    def _stop_processing(self) -> None:
        """Deactivate's teardown: inputs and timers gone, background detection dropped."""
        self.inputs.stop()
        for name in list(self._activation_timers):
            self._replace_timer(name, "", None, lambda: None)
        worker = self.worker
        if worker is not None:
            worker.drop_detection()

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        self.lifecycle = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self.lifecycle == "active":
            self.on_deactivate(state)
        self._release()
        self.lifecycle = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        cause = f": {self.last_error}" if self.last_error else ""
        self.get_logger().error(f"error in state {state.label}{cause}; stopping inputs and releasing the model")
        self.lifecycle = "unconfigured"
        # Also the deactivate teardown: a later configure + activate must not duplicate subscriptions/timers.
        self._stop_processing()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        worker, pipeline = self.worker, self.pipeline
        self.worker, self.pipeline = None, None  # new requests see a node that is not active
        stopped = worker.stop(self.stop_timeout_s) if worker is not None else True
        if pipeline is not None and stopped:
            pipeline.close()
        feed, self.memory_feed = self.memory_feed, None  # after the worker stopped: no job publishes on it
        self._close_feed(feed)
        tf, self.tf = self.tf, None
        self._close_tf(tf)
        self.outputs.destroy()
        self.inputs.release()
        self.matcher = None
        if stopped:
            self.model_state = "not loaded"
        else:
            # Closing the model under a running job would crash it; leaking it is the lesser harm.
            self.model_state = (f"error: the inference thread did not stop within {self.stop_timeout_s:.0f} s; "
                                "the model was left loaded (restart the node to free it)")
            self.get_logger().error(self.model_state)
        del worker, pipeline
        release_freed_memory()

    # ================================================================== runtime parameter changes
    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters if p.name in PARAMETERS}
        if not changes:
            return SetParametersResult(successful=True)
        configured = self.settings is not None and self.lifecycle in ("inactive", "active")
        reason = refusal(changes, self._parameter_values(), configured, self.get_name(), self.get_namespace())
        if reason is None and configured:
            reason = self._apply_live(changes)
        if reason is None and "diagnostics_period_s" in changes:
            self._diagnostics_timer.timer_period_ns = int(float(changes["diagnostics_period_s"]) * 1e9)
        if reason:
            self.get_logger().warning(f"parameter change refused: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        self.get_logger().info(f"parameters changed: {', '.join(f'{k}={v!r}' for k, v in changes.items())}")
        return SetParametersResult(successful=True)

    def _apply_live(self, changes: dict) -> Optional[str]:
        """Apply validated live changes to the running node; a reason when one cannot be applied."""
        _, settings = validate({**self._parameter_values(), **changes}, self.get_name(), self.get_namespace())
        capacity = self._capacity_error(settings)
        if capacity:
            return capacity
        previous, self.settings = self.settings, settings
        self.inputs.settings = settings
        matcher, worker = self.matcher, self.worker
        if matcher is not None:
            matcher.slop_ns = int(settings.sync_slop_s * 1e9)
        if worker is not None:
            worker.max_queries = settings.max_queued_queries
        if self.lifecycle == "active" and (previous.no_input_warning_s, previous.detection_rate_hz) != (
                settings.no_input_warning_s, settings.detection_rate_hz):
            self._start_activation_timers(settings)
        return None

    # ================================================================== diagnostics
    def _publish_diagnostics(self) -> None:
        # Locals: the lifecycle thread may set these to None between two reads.
        matcher, pipeline, worker, settings = self.matcher, self.pipeline, self.worker, self.settings
        latest = matcher.latest() if matcher is not None else None
        age = None if latest is None else -self.inputs.ahead_s(latest)
        status = self.stats.status(
            name=f"{self.get_fully_qualified_name()}: pipeline",
            hardware_id=pipeline.config.model if pipeline is not None and pipeline.config.backend in ("n3d", "hispatial")
            else "tabletop", lifecycle=self.lifecycle, model_state=self.model_state,
            queue=worker.queue_length() if worker is not None else 0, frame_age_s=age,
            max_future_stamp_s=settings.max_future_stamp_s if settings is not None else None,
            input_problem=self.inputs.problem or self.inputs.qos_problem if self.lifecycle == "active" else "",
            last_error=self.last_error)
        status.values.append(KeyValue(key="requests_in_flight", value=str(self.queries.in_flight)))
        feed = self.memory_feed
        if feed is not None:
            status.values.append(KeyValue(key="memory_objects", value=str(len(feed.memory))))
        self._diagnostics.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                  status=[status]))


def main(args=None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from .executor import QueuedOnceExecutor

    rclpy.init(args=args)
    node = N3DNode()
    # One thread per request in flight (at most max_queued_queries, whatever it is set to before configure)
    # plus the reserve for sensors, timers and refusals. The pool starts threads only as they are needed.
    node.executor_threads = executor_threads_for(MAX_QUEUED_QUERIES_LIMIT)
    executor = QueuedOnceExecutor(num_threads=node.executor_threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or a shutdown from outside: the normal way to stop a node
    finally:
        if node.lifecycle != "finalized":
            node.on_shutdown(None)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
