"""Shared timing helpers for the side-by-side benchmarks: medians over repeats, ratios, a table."""
from __future__ import annotations

import platform
import statistics
import time
from typing import Callable


def median_time(fn: Callable[[], object], *, repeat: int = 7, number: int | None = None,
                min_time: float = 0.05) -> float:
    """Median seconds per call over ``repeat`` batches (``number`` calls each, auto-sized)."""
    fn()  # warm-up
    if number is None:
        number = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            if time.perf_counter() - t0 >= min_time or number >= 1 << 20:
                break
            number *= 4
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


def machine() -> str:
    import os
    return f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, {platform.platform()}"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    print(f"\n## {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
