"""Shared timing helpers for the side-by-side benchmarks: medians over repeats, ratios, a table."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
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


def run_children(script: str, threads: list[int], cases: list[str], extra: list[str] = ()) -> list[dict]:
    """Run ``script --child --threads n --case c ...`` once per thread count ``n`` (with the OMP,
    OpenBLAS and MKL thread variables set to ``n``, so each library starts with that many threads)
    and collect the JSON lines the children print."""
    results = []
    for n in threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}
        cmd = [sys.executable, script, "--child", "--threads", str(n)] + [a for c in cases for a in ("--case", c)]
        r = subprocess.run(cmd + list(extra), env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            raise SystemExit(f"benchmark child with {n} threads failed")
        results += [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return results
