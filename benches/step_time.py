"""CPU and wall time per 1 KB `put + get_tuple` step of RustSQLiteCheckpointer alone, in
bench_checkpoint.py's own loops: for comparing two builds run alternately, each in its own
process (one process cannot load two builds), when instructions are not enough.

    .venv/bin/python benches/step_time.py put|chat [STEPS]

Prints microseconds per step: user CPU, system CPU (`os.times`, in 10 ms ticks) and wall
(`time.perf_counter`), after 200 warm-up steps; 3,000 steps by default.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import bench_checkpoint as b

from fast_langgraph import RustSQLiteCheckpointer


def main() -> None:
    mode = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    saver = RustSQLiteCheckpointer(os.path.join(tempfile.mkdtemp(), "step_time.db"))
    values = b.state_of_size(1024)
    if mode == "put":
        step = b._put_get_loop(saver, values)
    elif mode == "chat":
        step = b._chat_step_loop(saver, values, 10)
    else:
        raise SystemExit(f"unknown mode {mode!r}: put or chat")
    for _ in range(200):
        step()
    t0, w0 = os.times(), time.perf_counter()
    for _ in range(steps):
        step()
    t1, w1 = os.times(), time.perf_counter()
    print(
        f"user {(t1.user - t0.user) / steps * 1e6:.1f} us, system "
        f"{(t1.system - t0.system) / steps * 1e6:.1f} us, wall {(w1 - w0) / steps * 1e6:.1f} us"
    )
    saver.close()


if __name__ == "__main__":
    main()
