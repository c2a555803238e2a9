"""What one `put_writes` costs when it commits alone, and when other threads write at once.

Each of N threads (1, 2, 4, 8) calls `RustSQLiteCheckpointer.put_writes` (two small writes) in
a loop, on a thread of its own; 2,000 calls in all per N, twice, after a warm-up. Prints the
calls per second, the calls per commit (`writer_stats()`: above 1 when callers met in the
group commit) and each call's latency, median and mean (the mean includes the calls that paid
for a WAL checkpoint).

Run: `.venv/bin/python benches/commit_latency.py`.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time

from langgraph.checkpoint.base import empty_checkpoint

from fast_langgraph import RustSQLiteCheckpointer

CALLS = 2000


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="flg-commit-latency-") as tmp:
        saver = RustSQLiteCheckpointer(os.path.join(tmp, "latency.db"))
        configs = [
            saver.put(
                {"configurable": {"thread_id": f"t{i}", "checkpoint_ns": ""}},
                empty_checkpoint(),
                {},
                {},
            )
            for i in range(8)
        ]

        def run(threads: int, per_thread: int, show: bool = True) -> None:
            latencies: list[float] = []
            lock = threading.Lock()

            def writer(i: int) -> None:
                mine = []
                for k in range(per_thread):
                    t0 = time.perf_counter()
                    saver.put_writes(configs[i], [("a", k), ("b", "x" * 100)], f"task-{i}-{k}")
                    mine.append(time.perf_counter() - t0)
                with lock:
                    latencies.extend(mine)

            before = saver.writer_stats()
            pool = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
            t0 = time.perf_counter()
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            elapsed = time.perf_counter() - t0
            after = saver.writer_stats()
            calls = after["calls"] - before["calls"]
            commits = after["commits"] - before["commits"]
            if show:
                print(
                    f"  {threads} thread(s): {calls / elapsed:>9,.0f} calls/s, "
                    f"{calls / commits:.2f} calls per commit, latency median "
                    f"{statistics.median(latencies) * 1e6:.0f} us, mean "
                    f"{statistics.mean(latencies) * 1e6:.0f} us"
                )

        run(1, 300, show=False)  # warm-up
        print(f"put_writes, {CALLS} calls per line")
        for _ in range(2):
            for threads in (1, 2, 4, 8):
                run(threads, CALLS // threads)
        saver.close()


if __name__ == "__main__":
    main()
