"""Instructions per `list()` of RustSQLiteCheckpointer over 1,000 checkpoints, per thread
(the caller's, and the store's thread that reads the rows), counted by callgrind: immune to
the machine's load, unlike wall or CPU time.

    .venv/bin/python benches/callgrind_list.py fill DIR     # the thread of bench_checkpoint.py
    for n in 0 3; do
      valgrind --tool=callgrind --separate-threads=yes \\
        --callgrind-out-file=DIR/cg.$n.%p .venv/bin/python benches/callgrind_list.py list DIR $n
    done
    grep -m1 '^summary:' DIR/cg.*          # one file per thread: -01 the caller, -02 the reader

Per list: (caller's total at 3 lists - at 0 lists) / 3, and the reader's total / 3.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from fast_langgraph import RustSQLiteCheckpointer


def main() -> None:
    mode, folder = sys.argv[1], sys.argv[2]
    path = os.path.join(folder, "list.db")
    if mode == "fill":
        from bench_checkpoint import fill_thread

        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        saver = RustSQLiteCheckpointer(path)
        config = fill_thread(saver, 1000)
        saver.close()
        with open(os.path.join(folder, "list.json"), "w") as f:
            json.dump(config, f)
        return
    with open(os.path.join(folder, "list.json")) as f:
        config = json.load(f)
    saver = RustSQLiteCheckpointer(path)
    for _ in range(int(sys.argv[3])):
        items = list(saver.list(config))
        assert len(items) == 1000, len(items)
        del items  # freeing the checkpoints is part of the cost, as in bench_checkpoint.py
    saver.close()


if __name__ == "__main__":
    main()
