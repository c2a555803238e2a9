"""fast_langgraph.executor: PoolExecutor, get_executor_for_config, parallel_map, BatchExecutor."""

from __future__ import annotations

import contextvars
import os
import signal
import sys
import threading
import time
from concurrent.futures import CancelledError, Executor, Future, wait

import pytest

import fast_langgraph
from fast_langgraph import executor as fx
from fast_langgraph._native import WorkerPool


@pytest.fixture(autouse=True)
def _reset_settings():
    yield
    fast_langgraph._settings.reset_configuration()


def test_submit_returns_results_and_errors() -> None:
    with fx.PoolExecutor() as ex:
        assert isinstance(ex, Executor)
        assert ex.submit(lambda a, b=0: a + b, 1, b=2).result(timeout=10) == 3
        bad = ex.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            bad.result(timeout=10)
        # BaseException subclasses land in the future too, as in ThreadPoolExecutor.
        exit_future = ex.submit(sys.exit, 3)
        assert isinstance(exit_future.exception(timeout=10), SystemExit)


def test_map_keeps_order_and_propagates_errors() -> None:
    with fx.PoolExecutor(max_workers=3) as ex:
        assert list(ex.map(lambda x, y: x * y, range(20), range(20))) == [i * i for i in range(20)]
        with pytest.raises(ValueError):
            list(ex.map(lambda x: int("x") if x == 5 else x, range(10)))


def test_tasks_run_in_a_copy_of_the_submitters_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")

    def task() -> str:
        seen = var.get()
        var.set("changed in task")
        return seen

    with fx.PoolExecutor() as ex:
        assert ex.submit(task).result(timeout=10) == "caller"
        assert list(ex.map(lambda _: var.get(), range(3))) == ["caller"] * 3
    assert var.get() == "caller"


def test_tasks_run_on_rust_worker_threads_not_the_caller() -> None:
    with fx.PoolExecutor() as ex:
        ident = ex.submit(threading.get_ident).result(timeout=10)
    assert ident != threading.get_ident()
    assert fx.pool_stats()["threads"] >= 1


def test_max_workers_bounds_concurrency() -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    release = threading.Event()

    def task() -> None:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        release.wait(0.02)
        with lock:
            state["now"] -= 1

    with fx.PoolExecutor(max_workers=2) as ex:
        futures = [ex.submit(task) for _ in range(12)]
    assert all(f.done() for f in futures)
    assert state["peak"] == 2


def test_unbounded_executor_overlaps_blocking_calls() -> None:
    # 16 tasks that only finish when all 16 run at once.
    barrier = threading.Barrier(16, timeout=20)
    results = fx.parallel_map(lambda _: barrier.wait(), range(16))
    assert sorted(results) == list(range(16))


def test_with_block_waits_for_tasks_and_keeps_the_pool() -> None:
    pool = fx.get_pool()
    done = []
    with fx.get_executor_for_config({}) as ex:
        ex.submit(lambda: threading.Event().wait(0.05) or done.append(1))
    assert done == [1]
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(int)
    assert fx.get_pool() is pool
    with fx.get_executor_for_config({"max_concurrency": 1}) as ex2:
        assert ex2.max_workers == 1
        assert ex2.submit(int).result(timeout=10) == 0


def test_shutdown_cancel_futures_cancels_queued_work() -> None:
    gate, started = threading.Event(), threading.Event()
    ex = fx.PoolExecutor(max_workers=1)
    first = ex.submit(lambda: started.set() or gate.wait(10))
    assert started.wait(10)
    queued = [ex.submit(int) for _ in range(5)]
    ex.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert first.result(timeout=10) is True
    wait(queued, timeout=10)
    assert all(f.cancelled() for f in queued)


def test_nested_submit_and_wait_never_deadlocks_even_when_the_pool_is_full() -> None:
    fast_langgraph.configure(workers=2)
    pool = fx.get_pool()
    assert pool.max_threads == 2

    def nest(depth: int) -> int:
        if depth == 0:
            return 1
        with fx.PoolExecutor() as ex:
            return sum(f.result(timeout=20) for f in [ex.submit(nest, depth - 1) for _ in range(2)])

    # 2**5 leaves, 5 levels of waiting, on 2 threads.
    assert fx.parallel_map(nest, [5, 5, 5]) == [32, 32, 32]
    assert pool.stats()["inline_runs"] > 0


def test_nested_submit_to_a_full_executor_of_its_own_runs_inline() -> None:
    with fx.PoolExecutor(max_workers=1) as ex:

        def outer() -> int:
            return ex.submit(lambda: 41).result(timeout=10) + 1

        assert ex.submit(outer).result(timeout=10) == 42


def test_parallel_map_orders_results_and_reports_the_first_failing_index() -> None:
    assert fx.parallel_map(lambda x: x * 2, range(100), max_concurrency=4) == [
        x * 2 for x in range(100)
    ]
    assert fx.parallel_map(str, []) == []

    def f(x: int) -> int:
        if x in (7, 3):
            raise KeyError(x)
        return x

    with pytest.raises(KeyError) as info:
        fx.parallel_map(f, range(10))
    assert info.value.item_index == 3
    assert "item 3 of 10" in info.value.__notes__[0]
    out = fx.parallel_map(f, range(10), return_exceptions=True)
    assert isinstance(out[3], KeyError) and isinstance(out[7], KeyError) and out[9] == 9
    with pytest.raises(ValueError):
        fx.parallel_map(f, [1], max_concurrency=0)


def test_batch_executor() -> None:
    with fx.BatchExecutor(max_concurrency=3) as batch:
        assert batch.map(lambda x: x + 1, [1, 2, 3]) == [2, 3, 4]
        assert batch.submit(pow, 2, 10).result(timeout=10) == 1024
        with pytest.raises(ZeroDivisionError) as info:
            batch.map(lambda x: 1 / x, [1, 0, 2])
        assert info.value.item_index == 1
    with pytest.raises(RuntimeError):
        batch.submit(int)


def test_workers_setting_resizes_the_pool_for_new_executors() -> None:
    fast_langgraph.configure(workers=5)
    assert fx.get_pool().max_threads == 5
    with fx.PoolExecutor() as ex:
        assert ex.submit(int).result(timeout=10) == 0
    fast_langgraph._settings.reset_configuration()
    assert fx.get_pool().max_threads == 64


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        fx.PoolExecutor(max_workers=0)
    with pytest.raises(TypeError):
        fx.PoolExecutor(max_workers="2")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WorkerPool(0)
    with pytest.raises(ValueError):
        fast_langgraph.configure(workers=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_fresh_pool() -> None:
    with fx.PoolExecutor() as ex:
        ex.submit(int).result(timeout=10)
    parent_pool = fx.get_pool()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            with fx.PoolExecutor() as ex:
                ok = ex.submit(lambda: 7).result(timeout=10) == 7
            code = 0 if ok and fx.get_pool() is not parent_pool else 2
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    status = os.read(r, 1)
    os.close(r)
    _, exit_status = os.waitpid(pid, 0)
    assert status == bytes([0])
    assert os.waitstatus_to_exitcode(exit_status) == 0


def test_futures_are_plain_concurrent_futures() -> None:
    with fx.PoolExecutor() as ex:
        f = ex.submit(int, "5")
        seen: list[int] = []
        f.add_done_callback(lambda fut: seen.append(fut.result()))
        assert isinstance(f, Future)
        assert f.result(timeout=10) == 5
    assert seen == [5]
    assert not f.cancel()
    with pytest.raises(CancelledError):
        g: Future = Future()
        g.cancel()
        g.result()


def test_ctrl_c_interrupts_a_wait_for_tasks() -> None:
    import _thread

    # A process started in the background by a non-interactive shell inherits SIGINT ignored,
    # and then interrupt_main() does nothing: install Python's handler for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    gate = threading.Event()
    interrupted = threading.Event()
    ex = fx.PoolExecutor()
    ex.submit(gate.wait, 10)

    def keep_interrupting() -> None:
        # Again until it lands: a KeyboardInterrupt that happens to arrive while a finalizer
        # runs in the main thread is swallowed by Python ("Exception ignored in ...").
        while not interrupted.wait(0.2):
            _thread.interrupt_main()

    sender = threading.Thread(target=keep_interrupting)
    sender.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ex.shutdown(wait=True)
    finally:
        interrupted.set()
        gate.set()
        try:
            sender.join()
            time.sleep(0.01)  # a signal the sender sent meanwhile is handled here
        except KeyboardInterrupt:
            pass
        signal.signal(signal.SIGINT, previous)
    ex.shutdown(wait=True)
