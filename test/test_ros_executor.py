"""QueuedOnceExecutor: a callback queued behind a busy pool must not make the spin thread loop."""

from __future__ import annotations

import threading
import time


def _spins_while_the_pool_is_busy(context, executor_class):
    """Wake-ups of the spin thread while its only pool thread is blocked and a message waits in the queue."""
    import rclpy
    from rclpy.callback_groups import ReentrantCallbackGroup
    from std_msgs.msg import String

    executor = executor_class(num_threads=1, context=context)
    node = rclpy.create_node("executor_probe", context=context)
    received, release, blocked = [], threading.Event(), threading.Event()

    def block(msg):
        blocked.set()
        release.wait(5.0)
        received.append(msg.data)

    group = ReentrantCallbackGroup()
    node.create_subscription(String, "block", block, 10, callback_group=group)
    node.create_subscription(String, "queued", lambda msg: received.append(msg.data), 10, callback_group=group)
    pub_block, pub_queued = node.create_publisher(String, "block", 10), node.create_publisher(String, "queued", 10)
    executor.add_node(node)
    wakeups = [0]
    original = executor.wait_for_ready_callbacks

    def counted(*args, **kwargs):
        wakeups[0] += 1
        return original(*args, **kwargs)

    executor.wait_for_ready_callbacks = counted
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 5.0
        while pub_queued.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        pub_block.publish(String(data="first"))
        assert blocked.wait(5.0)
        pub_queued.publish(String(data="second"))  # its handler can only wait in the pool's queue
        time.sleep(0.2)
        start = wakeups[0]
        time.sleep(0.5)
        spins = wakeups[0] - start
        release.set()
        deadline = time.monotonic() + 5.0
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return spins, received
    finally:
        release.set()
        executor.shutdown(timeout_sec=5.0)
        spinner.join(5.0)
        node.destroy_node()


def test_a_queued_callback_does_not_make_the_spin_thread_loop(ros_context):
    from rclpy.executors import MultiThreadedExecutor

    from n3d_ros.ros.executor import QueuedOnceExecutor

    spins, received = _spins_while_the_pool_is_busy(ros_context, QueuedOnceExecutor)
    assert received == ["first", "second"]  # nothing lost, the queued callback ran once the pool was free
    assert spins < 120, spins  # it slept until the pool could start the task (0.5 s / QUEUED_WAIT_S = 50)
    stock_spins, stock_received = _spins_while_the_pool_is_busy(ros_context, MultiThreadedExecutor)
    assert sorted(stock_received) == ["first", "second"]
    # The stock executor loops only while its pool thread is slow to start the queued task (timing): compare
    # where it did, without reporting the assertions above as skipped where it did not.
    if stock_spins >= 200:
        assert spins * 10 < stock_spins
