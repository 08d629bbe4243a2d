"""Timing helper shared by the benchmark scripts (run as `python bench/NAME.py`, so this imports as `timing`)."""

import statistics
import time


def median_s(fn, repeats: int, warmup: int = 0) -> float:
    """Median wall time of fn() in seconds over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_ms(fn, repeats: int, warmup: int = 0) -> float:
    return 1000.0 * median_s(fn, repeats, warmup)
