"""Helpers shared by the benchmark scripts: interleaved rounds, medians, a table, and
contenders in processes of their own."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any


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


class Workers:
    """Contenders in processes of their own, one per name, each started as its command: a
    worker prints ``ready`` once set up, then answers each line it reads with one line of
    JSON, and ends when its input closes. The workers' environment has no
    ``FAST_LANGGRAPH_*`` variable, so nothing is patched unless a worker patches it."""

    def __init__(self, commands: dict[str, list[str]]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAST_LANGGRAPH_")}
        self.procs = {
            name: subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
            )
            for name, cmd in commands.items()
        }
        for p in self.procs.values():
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def order(self, round_: int) -> list[str]:
        """The workers in turn for a round: reversed every other round."""
        names = list(self.procs)
        return names if round_ % 2 == 0 else names[::-1]

    def ask(self, name: str, line: str) -> Any:
        """Sends ``line`` to the worker and returns its answer."""
        p = self.procs[name]
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write(line + "\n")
        p.stdin.flush()
        return json.loads(p.stdout.readline())

    def close(self, timeout: float) -> None:
        """Closes every worker's input and waits for it to end."""
        for p in self.procs.values():
            assert p.stdin is not None
            p.stdin.close()
            p.wait(timeout=timeout)
