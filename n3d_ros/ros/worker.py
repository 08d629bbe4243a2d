"""One inference thread for the node: a bounded queue of queries plus one slot for background detection.

The model is used by one thread only, so executor threads stay free for sensor callbacks while it runs.
Callers wait on their Job with a timeout; a job whose caller gave up (timeout, cancel) is skipped if it
has not started, and a running one sees job.abandoned set (jobs pass it to the model as its cancel flag,
so decoding stops early and the thread is free for the next job). Exceptions in a job are caught and handed back to
its caller as the job's error: the node never dies on a request.
"""

from __future__ import annotations

import collections
import threading
import time
import traceback
from typing import Callable, Deque, Optional


class Job:
    def __init__(self, run: Callable[["Job"], object], kind: str):
        self.run = run
        self.kind = kind
        self.created = time.monotonic()
        self.started: Optional[float] = None
        self.finished: Optional[float] = None
        self.result: object = None
        self.error: Optional[str] = None
        self.abandoned = threading.Event()
        self.stage = "queued"
        self.partial: object = None  # e.g. the grounded boxes while a query is still reasoning
        self._done = threading.Event()

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(max(0.0, timeout_s))

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def abandon(self) -> None:
        self.abandoned.set()

    def fail_unstarted(self, reason: str) -> None:
        """End a job that never ran: its waiter wakes with ``reason`` as the error."""
        self.abandon()
        self.error = reason
        self._done.set()


class QueueFull(RuntimeError):
    pass


class InferenceWorker:
    def __init__(self, max_queries: int, logger=None):
        self.max_queries = int(max_queries)
        self._queries: Deque[Job] = collections.deque()
        self._detection: Optional[Job] = None
        self._running: Optional[Job] = None
        self._cond = threading.Condition()
        self._stop = False
        self._logger = logger
        self._thread = threading.Thread(target=self._loop, name="n3d-inference", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ submit
    def submit_query(self, job: Job) -> Job:
        """Queue a query; QueueFull when max_queries are already waiting or running."""
        with self._cond:
            if self._stop:
                raise QueueFull("the node is shutting down")
            busy = len(self._queries) + (1 if self._running is not None and self._running.kind == "query" else 0)
            if busy >= self.max_queries:
                raise QueueFull(f"{busy} queries are already queued or running (max_queued_queries="
                                f"{self.max_queries}); retry later")
            self._queries.append(job)
            self._cond.notify()
        return job

    def submit_detection(self, job: Job) -> bool:
        """Offer a background detection; False when one is still pending (detection never piles up)."""
        with self._cond:
            if self._stop or self._detection is not None:
                return False
            if self._running is not None and self._running.kind == "detection":
                return False
            self._detection = job
            self._cond.notify()
            return True

    def drop_detection(self) -> None:
        """Forget a pending background detection and cancel a running one (deactivate: stop processing)."""
        with self._cond:
            pending, self._detection = self._detection, None
            running = self._running if self._running is not None and self._running.kind == "detection" else None
        if pending is not None:
            pending.fail_unstarted("dropped: the node was deactivated before this detection ran")
        if running is not None:
            running.abandon()

    def queue_length(self) -> int:
        with self._cond:
            return len(self._queries)

    def busy(self) -> bool:
        with self._cond:
            return self._running is not None

    # ------------------------------------------------------------------ loop
    def _next(self) -> Optional[Job]:
        with self._cond:
            while not self._stop and not self._queries and self._detection is None:
                self._cond.wait()
            if self._stop:
                return None
            # Queries first: a person or planner is waiting on them.
            if self._queries:
                job = self._queries.popleft()
            else:
                job, self._detection = self._detection, None
            self._running = job
            return job

    def _loop(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                if not job.abandoned.is_set():
                    job.started = time.monotonic()
                    job.result = job.run(job)
            except Exception as exc:  # the worker must survive any failure of one job
                job.error = f"{type(exc).__name__}: {exc}"
                if self._logger is not None:
                    self._logger.error(f"{job.kind} failed: {job.error}\n{traceback.format_exc()}")
            finally:
                job.finished = time.monotonic()
                with self._cond:
                    self._running = None
                job._done.set()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Refuse new work, fail queued jobs, cancel the running one and wait until it has really ended.

        True when the inference thread has ended; False when the running job did not stop within timeout_s
        (the caller must then not free what that job still uses, e.g. the model).
        """
        with self._cond:
            self._stop = True
            pending = list(self._queries) + ([self._detection] if self._detection else [])
            self._queries.clear()
            self._detection = None
            running = self._running
            self._cond.notify_all()
        for job in pending:
            job.fail_unstarted("the node stopped (deactivated or cleaned up) before this request ran")
        if running is not None:
            running.abandon()  # the job's model call polls this and returns early
        if self._thread is threading.current_thread():
            return False  # stop() from inside a job: it cannot wait for itself
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
