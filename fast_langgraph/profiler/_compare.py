"""compare(): the same graph stock and accelerated, in two processes, interleaved rounds."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fast_langgraph.profiler._load import target_of
from fast_langgraph.profiler._report import ProfileReport, ms

MODES = ("stock", "accelerated")


class CompareError(RuntimeError):
    """A child process failed: the graph could not be loaded or an invoke raised."""


class OutputsDiffer(CompareError):
    """Stock and accelerated runs gave different outputs: no speedup is reported."""


@dataclasses.dataclass
class CompareResult:
    """The outcome of :func:`compare`. Times are seconds per invoke."""

    target: str
    rounds: int
    invokes_per_round: int
    stock_rounds_s: list[float]
    accelerated_rounds_s: list[float]
    stock_median_s: float
    accelerated_median_s: float
    speedup: float
    speedup_min: float
    speedup_max: float
    phases: dict[str, dict[str, float]]  # mode -> phase -> seconds per invoke (profiled round)
    gain_share: dict[str, float]  # phase -> share of the time saved (profiled round)
    applied: list[str]
    stock_setup: list[str]
    profiles: dict[str, ProfileReport]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["profiles"] = {k: v.to_dict() for k, v in self.profiles.items()}
        return d

    def format(self) -> str:
        return format_compare(self)

    def export(self, path: Any) -> None:
        """JSON for a ``.json`` path, else a self-contained HTML page."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=2))
        else:
            from fast_langgraph.profiler import _report

            path.write_text(_report.compare_html_renderer(self))


class _Child:
    def __init__(self, mode: str, spec_path: Path, workdir: Path) -> None:
        self.mode = mode
        self.err_path = workdir / f"{mode}.stderr"
        self._err = open(self.err_path, "wb")
        env = dict(os.environ)
        if mode == "stock":
            # The stock side must be stock: an auto-patching environment would patch it too.
            env.pop("FAST_LANGGRAPH_AUTO_PATCH", None)
        paths = [p or os.getcwd() for p in sys.path]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fast_langgraph.profiler._runner", mode, str(spec_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
            text=True,
        )

    def ask(self, command: str | None) -> dict[str, Any]:
        if command is not None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(command + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise CompareError(
                f"the {self.mode} process exited ({self.proc.returncode}):\n" + self._stderr_tail()
            )
        reply = json.loads(line)
        if "error" in reply:
            raise CompareError(f"the {self.mode} run failed: {reply['error'].rstrip()}")
        return reply

    def _stderr_tail(self) -> str:
        self._err.flush()
        return self.err_path.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def _first_difference(a: list[Any], b: list[Any]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            xs = json.dumps(x, indent=1, sort_keys=True).splitlines()
            ys = json.dumps(y, indent=1, sort_keys=True).splitlines()
            diff = list(difflib.unified_diff(xs, ys, "stock", "accelerated", lineterm="", n=2))
            return f"invoke {i + 1} differs:\n" + "\n".join(diff[:40])
    return f"the number of outputs differs ({len(a)} against {len(b)})"


def compare(
    build_graph: Any,
    inputs: list[Any],
    *,
    runs: int = 5,
    config: dict[str, Any] | None = None,
    progress: bool | Any = True,
) -> CompareResult:
    """Runs the same graph stock and accelerated, each in its own process, and measures both.

    ``build_graph`` is a module-level function returning a compiled graph (or a string
    ``"path/to/app.py:build_graph"`` / ``"package.module:graph"``). ``inputs`` are the inputs
    of one round: invoked in order on one new thread (a multi-turn conversation). Inputs
    must pickle.

    It runs a warm-up round in each process and refuses (``OutputsDiffer``) when the outputs
    differ after normalization; then ``runs`` timed rounds, alternating which process goes
    first; then one profiled round each, for the split by phase. Progress goes to stderr
    (``progress=False`` silences it; a callable receives each line instead).
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    inputs = list(inputs)
    if not inputs:
        raise ValueError("inputs must hold at least one graph input")
    target = target_of(build_graph)
    say = _say(progress)

    with tempfile.TemporaryDirectory(prefix="flg-compare-") as tmp:
        work = Path(tmp)
        spec_path = work / "spec.pickle"
        spec_path.write_bytes(
            pickle.dumps(
                {
                    "target": target,
                    "inputs": pickle.dumps(inputs),
                    "config": config,
                    "workdir": str(work),
                }
            )
        )
        children: dict[str, _Child] = {}
        try:
            say(f"compare {target}: starting the stock and accelerated processes")
            for mode in MODES:
                children[mode] = _Child(mode, spec_path, work)
            setup = {mode: children[mode].ask(None)["setup"] for mode in MODES}

            say("warm-up round, checking that both give the same outputs")
            warm = {mode: children[mode].ask("round 0") for mode in MODES}
            if warm["stock"]["digest"] != warm["accelerated"]["digest"]:
                raise OutputsDiffer(
                    "stock and accelerated outputs differ, so no speedup is reported; "
                    + _first_difference(warm["stock"]["outputs"], warm["accelerated"]["outputs"])
                )
            digest = warm["stock"]["digest"]

            per_round: dict[str, list[float]] = {m: [] for m in MODES}
            for k in range(1, runs + 1):
                order = MODES if k % 2 else MODES[::-1]
                for mode in order:
                    reply = children[mode].ask(f"round {k}")
                    if reply["digest"] != digest:
                        raise OutputsDiffer(
                            f"the {mode} run gave other outputs in round {k} than in the "
                            "warm-up round, so no speedup is reported (is the graph "
                            "deterministic?)"
                        )
                    per_round[mode].append(sum(reply["times"]) / len(reply["times"]))
                s, a = per_round["stock"][-1], per_round["accelerated"][-1]
                say(
                    f"round {k}/{runs}: stock {ms(s)} ms, accelerated {ms(a)} ms per invoke "
                    f"({s / a:.2f}x)"
                )

            say("profiled round, for the split by phase")
            profiles = {
                mode: ProfileReport.from_dict(children[mode].ask(f"profile {runs + 1}")["report"])
                for mode in MODES
            }
        finally:
            for child in children.values():
                child.close()

    ratios = [s / a for s, a in zip(per_round["stock"], per_round["accelerated"])]
    stock_med = statistics.median(per_round["stock"])
    acc_med = statistics.median(per_round["accelerated"])
    phases = {mode: profiles[mode].per_invoke() for mode in MODES}
    saved = {
        p: phases["stock"][p] - phases["accelerated"][p]
        for p in ("nodes", "checkpointing", "other")
    }
    total_saved = phases["stock"]["total"] - phases["accelerated"]["total"]
    share = {p: (v / total_saved if total_saved else 0.0) for p, v in saved.items()}
    return CompareResult(
        target=target,
        rounds=runs,
        invokes_per_round=len(inputs),
        stock_rounds_s=per_round["stock"],
        accelerated_rounds_s=per_round["accelerated"],
        stock_median_s=stock_med,
        accelerated_median_s=acc_med,
        speedup=stock_med / acc_med,
        speedup_min=min(ratios),
        speedup_max=max(ratios),
        phases=phases,
        gain_share=share,
        applied=setup["accelerated"],
        stock_setup=setup["stock"],
        profiles=profiles,
    )


def _say(progress: Any) -> Any:
    if callable(progress):
        return progress
    if progress:
        return lambda line: print(f"[compare] {line}", file=sys.stderr, flush=True)
    return lambda line: None


def _format_shares(c: CompareResult) -> str:
    # Shares of a saving: meaningless when the profiled round saved nothing (one round, with
    # the profiler's hooks, is noisier than the timed rounds the speedup comes from).
    if c.phases["stock"]["total"] - c.phases["accelerated"]["total"] <= 0:
        return "  time saved by phase: none in the profiled round (the speedup is from the timed rounds)"
    return "  time saved by phase: " + ", ".join(
        f"{p} {v * 100:.0f}%" for p, v in c.gain_share.items()
    )


def format_compare(c: CompareResult) -> str:
    st, ac = c.phases["stock"], c.phases["accelerated"]
    lines = [
        f"{c.target}: {c.invokes_per_round} invokes per round, {c.rounds} interleaved rounds "
        "(+1 warm-up), separate processes",
        "outputs identical in every round (message ids and timestamps normalized)",
        "",
        f"  {'':<30} {'stock':>10} {'accelerated':>12} {'saved':>10}",
        f"  {'per invoke, median of rounds':<30} {ms(c.stock_median_s):>7} ms "
        f"{ms(c.accelerated_median_s):>9} ms "
        f"{ms(c.stock_median_s - c.accelerated_median_s):>7} ms",
        f"  {'profiled round, per invoke:':<30}",
    ]
    for phase, label in (
        ("nodes", "nodes"),
        ("checkpointing", "checkpointing"),
        ("other", "other framework overhead"),
        ("total", "total"),
    ):
        lines.append(
            f"    {label:<28} {ms(st[phase]):>7} ms {ms(ac[phase]):>9} ms "
            f"{ms(st[phase] - ac[phase]):>7} ms"
        )
    lines += [
        "",
        f"  speedup: {c.speedup:.2f}x (per round: min {c.speedup_min:.2f}x, "
        f"max {c.speedup_max:.2f}x)",
        _format_shares(c),
        "",
        "  accelerated run: " + "; ".join(c.applied),
        "  stock run: " + "; ".join(c.stock_setup),
    ]
    return "\n".join(lines)
