"""Where the end-to-end time of the PostgreSQL savers goes, per invocation of
bench_postgres.py's 8-node graph (200 invokes over 20 threads), both savers in one process
on one throwaway server (fsync on unless --no-fsync), interleaved rounds, medians:

- wall time;
- the client's CPU time (this process, every thread), and of it the system (kernel) time;
- the server's CPU time (the postmaster and every process it started, those that exited
  included, read from /proc: run as the server's user or root);
- commits (`pg_stat_database.xact_commit` of the saver's database) and WAL flushes
  (`pg_stat_wal.wal_sync`, the whole server), from one more run of each saver alone, read
  11 s after it ended (the backends report these counters late);
- statements executed (`pg_stat_statements`, loaded for the run), the rounds of the protocol
  the server answers.

    .venv/bin/python benches/pg_e2e_breakdown.py [--rounds 5] [--no-fsync]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from bench_checkpoint import build_graph
from bench_postgres import ours, run_e2e, stock
from langgraph.checkpoint.memory import InMemorySaver
from pg_server import PgServer

INVOKES = 200
CEILING = "InMemorySaver (ceiling)"
# `--only InMemorySaver+wait2`: see BlockingInMemorySaver.
WAITING = "InMemorySaver+wait"


class BlockingInMemorySaver(InMemorySaver):
    """``InMemorySaver`` whose ``put`` and ``put_writes`` then give up the GIL and block for
    ``wait`` seconds, as a call waiting for its commit does: what LangGraph costs the client
    with a saver that stores nothing but waits, like any durable saver, for each write (the
    GIL taken back after it, the executor starting another thread meanwhile). An experiment
    for measurement only, not a contender; ``--only InMemorySaver+wait2`` blocks 2 ms."""

    def __init__(self, wait: float) -> None:
        super().__init__()
        self.wait = wait

    def put(self, *args: Any, **kwargs: Any) -> Any:
        config = super().put(*args, **kwargs)
        time.sleep(self.wait)
        return config

    def put_writes(self, *args: Any, **kwargs: Any) -> None:
        super().put_writes(*args, **kwargs)
        time.sleep(self.wait)


TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(server: PgServer) -> float:
    """Seconds of CPU of the postmaster and its processes, the exited ones included."""
    pid = int((server.data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(fields[1])
        if int(entry) == pid:
            # utime, stime, cutime, cstime (the reaped children's time)
            total += sum(int(x) for x in fields[11:15]) / TICK
        elif ppid == pid:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def client_cpu() -> tuple[float, float]:
    """User and system CPU seconds of this process, every thread."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def counters(server: PgServer, db: str) -> tuple[int, int, int]:
    out = server.psql(
        "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),"
        " (SELECT wal_sync FROM pg_stat_wal),"
        " (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s"
        "  JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database())",
        dbname=db,
    )
    a, b, c = out.split("|")
    return int(a), int(b), int(c)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--only", default=f"PostgresSaver(pool),RustPostgresCheckpointer,{CEILING}")
    args = ap.parse_args()
    server = PgServer(durable=not args.no_fsync).start()
    try:
        server.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        server.restart()
        makers = {
            "PostgresSaver(pool)": stock,
            "RustPostgresCheckpointer": ours,
            CEILING: lambda url: InMemorySaver(),
        }
        savers: dict[str, tuple[str, Any]] = {}
        aliases = {"InMemorySaver": CEILING, "ceiling": CEILING}
        for name in (aliases.get(n, n) for n in args.only.split(",")):
            db = server.create_database("bd")
            server.psql("CREATE EXTENSION pg_stat_statements", dbname=db)
            if name.startswith(WAITING):
                saver: Any = BlockingInMemorySaver(float(name[len(WAITING) :]) / 1e3)
            else:
                saver = makers[name](server.url(db))
            savers[name] = (db, build_graph(saver))
        for _db, graph in savers.values():  # warm-up: pools, plans
            run_e2e(graph)
        rows: dict[str, dict[str, list[float]]] = {n: {} for n in savers}
        for _ in range(args.rounds):
            for name, (db, graph) in savers.items():
                c0, s0, k0 = client_cpu(), server_cpu(server), counters(server, db)
                t0 = time.perf_counter()
                run_e2e(graph)
                wall = time.perf_counter() - t0
                c1, s1, k1 = client_cpu(), server_cpu(server), counters(server, db)
                sample = {
                    "wall ms (whole run)": wall * 1e3,
                    "wall us/invoke": wall / INVOKES * 1e6,
                    "client CPU us/invoke": (sum(c1) - sum(c0)) / INVOKES * 1e6,
                    "  of it system us/invoke": (c1[1] - c0[1]) / INVOKES * 1e6,
                    "server CPU us/invoke": (s1 - s0) / INVOKES * 1e6,
                    "statements/invoke": (k1[2] - k0[2] - 1) / INVOKES,  # less the counters'
                }
                for k, v in sample.items():
                    rows[name].setdefault(k, []).append(v)
        # The server's backends report commits and WAL flushes at most once a second, and an
        # idle one 10 s after its last report: one run per saver, alone, counted from a quiet
        # server to a quiet server.
        for name, (db, graph) in savers.items():
            if name == CEILING or name.startswith(WAITING):  # no database: nothing to count
                rows[name]["commits/invoke"] = rows[name]["WAL flushes/invoke"] = [0.0]
                continue
            time.sleep(11)
            k0 = counters(server, db)
            run_e2e(graph)
            time.sleep(11)
            k1 = counters(server, db)
            rows[name]["commits/invoke"] = [(k1[0] - k0[0] - 1) / INVOKES]
            rows[name]["WAL flushes/invoke"] = [(k1[1] - k0[1]) / INVOKES]
        print(
            f"fsync {'off' if args.no_fsync else 'on'}, {args.rounds} rounds, medians;"
            f" load {os.getloadavg()[0]:.1f}"
        )
        names = list(savers)
        print(f"{'per invoke':28}" + "".join(f"{n:>28}" for n in names))
        for key in rows[names[0]]:
            print(f"{key:28}" + "".join(f"{statistics.median(rows[n][key]):>28.2f}" for n in names))
        if CEILING in savers:
            print(
                f"({CEILING}: no database at all, not a contender; what the graph costs the"
                " client under LangGraph with a saver that does nothing durable)"
            )
        for name, (db, _g) in savers.items():
            if name == CEILING or name.startswith(WAITING):
                continue
            print(f"\n{name}: top statements (calls over all runs)")
            print(
                server.psql(
                    "SELECT calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)"
                    " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                    " WHERE d.datname = current_database() ORDER BY calls DESC LIMIT 8",
                    dbname=db,
                )
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
