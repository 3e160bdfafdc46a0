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


def interleaved_medians(fns: dict[str, Callable[[], object]], *, rounds: int = 15, min_time: float = 0.1,
                        settle: bool = True) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternation: every round runs each one for
    about ``min_time`` (``0``: one call), so load that drifts on a shared machine hits all of them
    alike and the ratios stay fair (timing one peer after the other measured the same model 10-30%
    apart here). With ``settle`` each batch starts after a 0.1 s pause and one untimed call: the
    previous runtime's threads spin on after its last call (onnxruntime's made torch's next call 2.5x
    slower, torch's made ours 2x)."""
    number = {}
    for name, fn in fns.items():
        fn()  # warm-up
        t0 = time.perf_counter()
        fn()
        number[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if settle:
                time.sleep(0.1)
                fn()
            t0 = time.perf_counter()
            for _ in range(number[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / number[name])
    return {name: statistics.median(v) for name, v in samples.items()}


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
