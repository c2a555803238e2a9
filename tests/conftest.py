"""Helpers shared by the test files (import them with ``from conftest import ...``)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

import pytest


def cfg(thread_id: str, **extra: Any) -> dict:
    """A LangGraph config for ``thread_id``, with any other ``configurable`` keys."""
    return {"configurable": {"thread_id": thread_id, **extra}}


# ---- throwaway Redis servers: one for the session, one for a test (own_server) ----


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_answers(port: int) -> bool:
    """Whether a redis-server on 127.0.0.1:``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server():
    """A redis-server of this test session: 127.0.0.1 only, a free port, a temp directory, no
    persistence; stopped at the end. Fails (never skips) the tests that need it when it
    cannot start: ``make test`` installs it (scripts/install-test-servers.sh)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: run `bash scripts/install-test-servers.sh` "
            "(make test does), or `apt-get install redis-server`",
            pytrace=False,
        )
    workdir = tempfile.mkdtemp(prefix="flg-redis-")
    port = free_port()
    log = open(f"{workdir}/redis.log", "w+b")
    proc = subprocess.Popen(
        [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", workdir,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while not _redis_answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.seek(0)
            pytest.fail(
                f"redis-server did not start on port {port}: {log.read().decode(errors='replace')}",
                pytrace=False,
            )
        time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


class OwnServer:
    """A redis-server of one test (to stop, restart or pause it), on a loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="flg-redis-loop-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run `bash scripts/install-test-servers.sh`")
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.workdir,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not _redis_answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def own_server():
    """A redis-server of this test alone (OwnServer): the test may stop, restart or pause it."""
    server = OwnServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis server, emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture
def redis_client(redis_url):
    """A redis-py client of the session's server, to look at what the caches stored."""
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# The throwaway PostgreSQL server of the Postgres tests (tests/pg_server.py).
from pg_server import pg_db, pg_server  # noqa: E402, F401

# Tests per capability in langgraph-checkpoint-conformance 0.0.2: 81 in all.
CONFORMANCE_TOTAL = 81


def assert_conformant(factory: Any) -> None:
    """Runs LangGraph's conformance suite on ``factory`` (a ``checkpointer_test``) and asserts
    that every capability was detected and passed, with no test skipped and all
    ``CONFORMANCE_TOTAL`` run: the suite skips a capability whose method is not overridden
    and still reports a "full" level, so what ran and passed is counted."""
    from langgraph.checkpoint.conformance import validate
    from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

    report = asyncio.run(validate(factory))
    assert set(report.results) == {c.value for c in ALL_CAPABILITIES}
    failures = {
        cap: res.failures
        for cap, res in report.results.items()
        if res.tests_failed or not res.detected
    }
    assert not failures, failures
    passed = sum(res.tests_passed for res in report.results.values())
    skipped = sum(res.tests_skipped for res in report.results.values())
    assert skipped == 0
    assert passed == CONFORMANCE_TOTAL


class SyncThroughThreadMixin:
    """Put before a saver class in the bases: routes every a* call to the sync method on a
    worker thread, so LangGraph's conformance suite (which calls only a* methods) exercises
    the sync API."""

    async def aget_tuple(self, config):
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config, *, filter=None, before=None, limit=None):
        items = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in items:
            yield item

    async def aput(self, config, checkpoint, metadata, new_versions):
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        return await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id):
        return await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids):
        return await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id, target_thread_id):
        return await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids, *, strategy="keep_latest"):
        return await asyncio.to_thread(lambda: self.prune(thread_ids, strategy=strategy))

    async def aget_delta_channel_history(self, *, config, channels):
        return await asyncio.to_thread(
            lambda: self.get_delta_channel_history(config=config, channels=channels)
        )
