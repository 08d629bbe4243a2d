"""The executor the n3d node runs in: rclpy's MultiThreadedExecutor without its hot loop.

Before waiting for new work, rclpy's executor offers again every task that was handed to the thread pool but
has not started yet, and the stock MultiThreadedExecutor submits it again at each offer without waiting.
While the pool threads wait for the GIL (the inference thread runs numpy/torch), the spin thread therefore
loops: measured with the tabletop node at 30 Hz input, ~1500 wait-set rebuilds per second for ~90 messages,
84% of the GIL in the spin thread, query latency p95 over 1 s and frames going stale during queries.

Skipping the re-offer alone is not enough: rcl's wait then returns at once again (with nothing the executor
can take), so the loop goes on. This subclass submits a task at most once while it is queued, and when a
queued task is offered again it sleeps until a pool thread starts it, for at most QUEUED_WAIT_S. The spin
thread then gives the GIL to the threads doing the work; new work waits at most QUEUED_WAIT_S longer, and only
while the pool is behind. Everything else (threads, callback groups, shutdown, exceptions raised from
callbacks) is the stock executor's.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from rclpy.executors import (ConditionReachedException, ExternalShutdownException, MultiThreadedExecutor,
                             ShutdownException, TimeoutException)

QUEUED_WAIT_S = 0.01  # longest sleep of the spin thread while a task it submitted waits for a pool thread


class QueuedOnceExecutor(MultiThreadedExecutor):
    def __init__(self, num_threads: Optional[int] = None, *, context=None):
        super().__init__(num_threads=num_threads, context=context)
        self._queued = set()  # tasks submitted to the pool that have not started
        self._queued_started = threading.Condition()
        self.skipped_offers = 0  # re-offers of queued tasks that were not submitted again (for benchmarks)

    def _run_task(self, task) -> None:
        with self._queued_started:
            self._queued.discard(task)
            self._queued_started.notify_all()
        task()

    def _spin_once_impl(self, timeout_sec=None, wait_condition: Callable[[], bool] = lambda: False) -> None:
        # Same steps as MultiThreadedExecutor._spin_once_impl, plus the queued check.
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        with self._queued_started:
            if handler in self._queued:
                self.skipped_offers += 1
                self._queued_started.wait(QUEUED_WAIT_S)
                return
            self._queued.add(handler)
        self._executor.submit(self._run_task, handler)
        self._futures.append(handler)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # re-raise a callback's exception, as the stock executor does
