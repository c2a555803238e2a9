"""Helpers shared by the benchmark scripts: interleaved rounds, medians, a table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(
    contenders: dict[str, Callable[[], object]],
    *,
    rounds: int,
    reps: int,
    before: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Median seconds per call of each contender. Each round runs every contender `reps`
    times, in turn, so machine noise hits all of them alike. `before`, if given, runs before
    each contender's sample, outside its timing."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in contenders.items():
            if before is not None:
                before()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            samples[name].append((time.perf_counter() - t0) / reps)
    return {name: statistics.median(s) for name, s in samples.items()}


def table(title: str, results: dict[str, float], *, baseline: str, unit: str = "us") -> str:
    scale = {"us": 1e6, "ms": 1e3, "s": 1.0}[unit]
    base = results[baseline]
    lines = [f"\n{title}", f"  {'contender':<34} {'median ' + unit:>12} {'vs ' + baseline:>18}"]
    for name, t in results.items():
        lines.append(f"  {name:<34} {t * scale:>12.1f} {base / t:>17.2f}x")
    return "\n".join(lines)
