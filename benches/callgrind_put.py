"""Instructions per 1 KB `put + get_tuple` step of bench_checkpoint.py's own loops, or per
invocation of its 8-node graph, counted by callgrind: immune to the machine's load, unlike wall
or CPU time.

    for n in 0 500; do
      PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=DIR/cg.$n \\
        .venv/bin/python benches/callgrind_put.py put RustSQLiteCheckpointer $n
    done
    grep -m1 '^summary:' DIR/cg.*      # per step: (summary at 500 - at 0) / 500

Modes: `put` (`_put_get_loop`: every channel rewritten), `chat` (`_chat_step_loop`: one
message appended), `refs` (bench_sqlite_refs.py's put, which changes a counter and refers to an
unchanged 5 KB blob; no get_tuple), each after 50 warm-up steps; `e2e` (the graph, 20 conversations at a time
over 20 threads, after one warm-up invocation per conversation; every thread's instructions
counted, the commits' included). The saver is one of bench_checkpoint.py's contenders, by name.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import bench_checkpoint as b
from langchain_core.messages import HumanMessage


def main() -> None:
    mode, saver_name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    saver = b.make_savers(tempfile.mkdtemp(), "callgrind")[saver_name]
    if mode == "refs":
        from bench_sqlite_refs import refs_step

        step = refs_step(saver)
        for _ in range(50 + n):
            step()
        return
    if mode in ("put", "chat"):
        values = b.state_of_size(1024)
        step = (
            b._put_get_loop(saver, values)
            if mode == "put"
            else b._chat_step_loop(saver, values, 10)
        )
        for _ in range(50):
            step()
        for _ in range(n):
            step()
        return
    if mode != "e2e":
        raise SystemExit(f"unknown mode {mode!r}: put, chat, refs or e2e")
    e2e(saver, n)


def e2e(saver: Any, n: int) -> None:
    """The graph with ``saver``: one warm-up invocation per conversation, 20 conversations at a
    time over 20 threads, then ``n`` invocations more in all."""
    graph = b.build_graph(saver)

    def run(per_thread: int) -> None:
        prefix = uuid.uuid4().hex

        def conversation(t: int) -> None:
            config = {"configurable": {"thread_id": f"{prefix}-{t}"}}
            for i in range(per_thread):
                graph.invoke({"messages": [HumanMessage(content=f"q {i}")], "results": []}, config)

        with ThreadPoolExecutor(20) as pool:
            list(pool.map(conversation, range(20)))

    run(1)
    if n:
        run(n // 20)


if __name__ == "__main__":
    main()
