"""The inference worker: bounded queue, queries before detection, survives failures, skips abandoned jobs."""

from __future__ import annotations

import threading

import pytest

from n3d_ros.ros.worker import InferenceWorker, Job, QueueFull


def test_queue_is_bounded_and_jobs_run_in_order():
    gate = threading.Event()
    order = []
    worker = InferenceWorker(max_queries=2)
    try:
        first = worker.submit_query(Job(lambda job: (gate.wait(5), order.append(1)), "query"))
        while not worker.busy():
            pass
        second = worker.submit_query(Job(lambda job: order.append(2), "query"))
        with pytest.raises(QueueFull, match="max_queued_queries=2"):
            worker.submit_query(Job(lambda job: order.append(3), "query"))
        gate.set()
        assert first.wait(5) and second.wait(5)
        assert order == [1, 2]
    finally:
        worker.stop()


def test_a_failing_job_reports_its_error_and_the_worker_keeps_serving():
    worker = InferenceWorker(max_queries=1)
    try:
        bad = worker.submit_query(Job(lambda job: 1 / 0, "query"))
        assert bad.wait(5) and bad.error.startswith("ZeroDivisionError")
        good = worker.submit_query(Job(lambda job: 42, "query"))
        assert good.wait(5) and good.result == 42 and good.error is None
    finally:
        worker.stop()


def test_abandoned_jobs_are_skipped_and_detection_never_piles_up():
    gate = threading.Event()
    ran = []
    worker = InferenceWorker(max_queries=3)
    try:
        worker.submit_query(Job(lambda job: gate.wait(5), "query"))
        while not worker.busy():
            pass
        skipped = worker.submit_query(Job(lambda job: ran.append("skipped"), "query"))
        skipped.abandon()
        detection = Job(lambda job: ran.append("detection"), "detection")
        assert worker.submit_detection(detection)
        assert not worker.submit_detection(Job(lambda job: ran.append("second detection"), "detection"))
        query = worker.submit_query(Job(lambda job: ran.append("query"), "query"))
        gate.set()
        assert query.wait(5) and detection.wait(5)
        # The query was submitted after the detection but runs first; the abandoned job never runs.
        assert ran == ["query", "detection"]
    finally:
        worker.stop()


def test_stop_fails_queued_jobs_with_a_reason():
    gate = threading.Event()
    worker = InferenceWorker(max_queries=2)
    worker.submit_query(Job(lambda job: gate.wait(5), "query"))
    while not worker.busy():
        pass
    queued = worker.submit_query(Job(lambda job: None, "query"))
    gate.set()
    worker.stop()
    assert queued.done
    assert queued.error is None or "stopped" in queued.error
