"""The server's cost of get_tuple's two statements, without any client in the way: pgbench
(libpq, prepared statements, one connection) runs each against a database that
RustPostgresCheckpointer filled (50 threads, 1 KB states, as bench_postgres.py's pair), on
one throwaway server (fsync off: reads only), in interleaved rounds; medians of the rounds'
mean latency per call.

- `whole`: the statement list() and a cold get_tuple use (`sql::LIST_TAIL`: the recursive
  walk along delta bases);
- `lean`: the one a get_tuple starts with when the saver holds values of the thread
  (`sql::GET_TAIL`: each blob by its key, no walk);
- `checkpoint row`: the row alone by its key, and `SELECT 1`, for scale.

The statements' text is read from src/checkpoint/postgres/sql.rs, with the thread's id in
place of `$1` and the root namespace in place of `$2`.

Run: `.venv/bin/python benches/pg_read_statements.py [--rounds 5] [--seconds 3]`.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from bench_postgres import ours, put_get
from pg_server import PgServer

SQL_RS = os.path.join(os.path.dirname(__file__), "..", "src", "checkpoint", "postgres", "sql.rs")


def _const(src: str, name: str) -> str:
    m = re.search(rf'pub const {name}: &str =\s*"(.*?)";\n', src, re.S)
    assert m, f"{name} not found in {SQL_RS}"
    return m.group(1)


def statements() -> dict[str, str]:
    src = open(SQL_RS).read()
    cols = _const(src, "CP_COLUMNS")
    cp = (
        f"cp AS (SELECT {cols} FROM flg_checkpoints WHERE thread_id = :thread "
        "AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1)"
    )
    return {
        "whole (list's)": f"WITH RECURSIVE {cp}" + _const(src, "LIST_TAIL").replace("{skip}", ""),
        "lean (held)": f"WITH {cp}" + _const(src, "GET_TAIL").replace("{skip}", ""),
        "checkpoint row": f"SELECT {cols} FROM flg_checkpoints WHERE thread_id = :thread "
        "AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
        "SELECT 1": "SELECT 1",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args()
    server = PgServer(durable=False).start()
    try:
        db = server.create_database("reads")
        saver = ours(server.url(db))
        step = put_get(saver, 1_000)
        for _ in range(300):
            step()
        saver.close()
        env = dict(os.environ, PGPASSWORD=server.password)
        tmp = tempfile.mkdtemp()
        scripts = {}
        for i, (name, text) in enumerate(statements().items()):
            path = os.path.join(tmp, f"{i}.sql")
            with open(path, "w") as f:
                # pgbench's variables: one of the 50 threads per call.
                f.write("\\set i random(0, 49)\n")
                f.write(text.replace(":thread", "('pg-1000-' || :i)") + ";\n")
            scripts[name] = path
        lat: dict[str, list[float]] = {n: [] for n in scripts}
        for _ in range(args.rounds):
            for name, path in scripts.items():
                out = subprocess.run(
                    [
                        f"{server.bindir}/pgbench", "-n", "-M", "prepared", "-c", "1",
                        "-T", str(args.seconds), "-f", path, "-h", server.host,
                        "-p", str(server.port), "-U", server.superuser, db,
                    ],
                    env=env, capture_output=True, text=True, check=True,
                )  # fmt: skip
                m = re.search(r"latency average = ([0-9.]+) ms", out.stdout)
                assert m, out.stdout + out.stderr
                lat[name].append(float(m.group(1)) * 1000)
        load = os.getloadavg()[0]
        print(
            f"pgbench, prepared, 1 connection, {args.rounds} rounds of {args.seconds} s, load {load:.1f}"
        )
        print(f"  {'statement':<22} {'us per call':>12}")
        for name, v in lat.items():
            print(f"  {name:<22} {statistics.median(v):>12.1f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
