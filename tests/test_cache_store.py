"""The persistent cache's contract: atomic puts shared by processes, one bounded space per
function, digests instead of keys on disk, values back with their types, keys bound to the
signature, single-flight statistics and close()."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from pydantic import BaseModel, SecretStr

from fast_langgraph import CacheError, FastLLMCache, RustLLMCache, cached
from fast_langgraph.executor import parallel_map

SECRET = "sk-test-0123456789abcdefSECRET"


def _run(code: str, env: dict | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() + ("\nSTDERR:" + out.stderr if out.stderr.strip() else "")


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())


# ---- atomic puts ----


WRITER = """
    import sys
    from fast_langgraph import RustLLMCache
    c = RustLLMCache(max_size=None, path=sys.argv[1])
    errors = 0
    for i in range(int(sys.argv[2])):
        try:
            c.put(f"k{i % 16}", i)
        except Exception as e:
            errors += 1
            last = e
    print(errors, repr(last) if errors else "")
"""


def test_two_processes_writing_the_same_keys_never_collide(tmp_path):
    path = str(tmp_path / "shared.db")
    RustLLMCache(path=path).put("warm", 1)  # the file exists before both start
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), path, "20000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.split()[0] == "0", out
    c = RustLLMCache(max_size=None, path=path)
    assert all(f"k{i}" in c for i in range(16))


KILLED = """
    import sys
    from fast_langgraph import RustLLMCache
    c = RustLLMCache(max_size=None, path=sys.argv[1])
    c.put("acknowledged", 0)
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        c.put("acknowledged", i)
"""


def test_a_kill_during_a_put_never_drops_an_acknowledged_entry(tmp_path):
    path = str(tmp_path / "killed.db")
    for round_ in range(6):
        p = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(KILLED), path],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.01 + 0.013 * round_)  # a different point of the put loop each round
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        c = RustLLMCache(max_size=None, path=path)
        assert "acknowledged" in c, f"round {round_}: the entry was lost"
        c.close()


# ---- one bounded space per function ----


def test_functions_sharing_a_file_have_their_own_bounded_space(tmp_path):
    path = str(tmp_path / "fns.db")
    calls: list = []

    @cached(max_size=100, path=path)
    def big(x):
        calls.append(("big", x))
        return x

    @cached(max_size=2, path=path)
    def small(x):
        calls.append(("small", x))
        return x

    for i in range(10):
        big(i)
    for i in range(10):
        small(i)
    assert big.cache_info().currsize == 10
    assert small.cache_info().currsize == 2
    big.cache.clear()  # the memory tier and its space in the file
    assert small.cache_info().currsize == 2
    for i in range(10):
        small(i)
    big2 = cached(max_size=100, path=path)(big.__wrapped__)
    assert big2.cache_info().currsize == 0
    small.cache_clear()
    assert small.cache_info().currsize == 0


def test_functions_sharing_a_file_survive_each_other_across_processes(tmp_path):
    path = str(tmp_path / "fns.db")
    code = f"""
        from fast_langgraph import cached
        calls = []
        @cached(max_size=100, path={path!r})
        def big(x):
            calls.append(x)
            return x
        @cached(max_size=2, path={path!r})
        def small(x):
            return x
        for i in range(10):
            big(i)
        for i in range(10):
            small(i)
        print(len(calls), big.cache_info().currsize, small.cache_info().currsize)
    """
    assert _run(code) == "10 10 2"
    assert _run(code) == "0 10 2"


# ---- secrets ----


class SecretModel(FakeListChatModel):
    api_key: SecretStr


def test_a_chat_model_api_key_never_reaches_the_disk(tmp_path):
    model = SecretModel(responses=["hi"], api_key=SecretStr(SECRET))
    path = tmp_path / "secret.db"

    @cached(path=str(path))
    def ask(llm, question):
        return llm.invoke(question).content

    assert ask(model, "what is the key?") == "hi"
    assert ask(model, "what is the key?") == "hi"
    assert ask.cache_info().hits == 1
    data = _all_bytes(tmp_path)
    assert data, "the cache wrote nothing"
    assert SECRET.encode() not in data
    assert b"what is the key?" not in data
    # The key is a digest: the same call in a new process still finds the entry.
    ask2 = cached(path=str(path))(ask.__wrapped__)
    assert ask2(model, "what is the key?") == "hi"
    assert ask2.cache_info().hits == 1


# ---- type fidelity ----


@dataclasses.dataclass
class Point:
    x: int
    y: tuple


class Answer(BaseModel):
    text: str
    score: float


def test_values_come_back_with_their_types(tmp_path):
    path = str(tmp_path / "types.db")
    value = {
        "pair": (1, "a"),
        "nested": [(1, (2, 3)), ()],
        "set": {1, 2},
        "point": Point(1, (2, 3)),
        "answer": Answer(text="t", score=0.5),
        "none": None,
    }
    RustLLMCache(path=path).put("k", value)
    RustLLMCache(path=path).put("t", (1, 2))
    back = RustLLMCache(path=path).get("k")
    assert back == value
    assert type(back["pair"]) is tuple and type(back["nested"][0][1]) is tuple
    assert type(back["point"]) is Point and type(back["answer"]) is Answer
    assert RustLLMCache(path=path).get("t") == (1, 2)


STRICT = """
    import dataclasses, logging, sys
    logging.basicConfig(level=logging.WARNING)
    from pydantic import BaseModel
    from fast_langgraph import cached

    class Answer(BaseModel):
        text: str

    @dataclasses.dataclass
    class Pair:
        a: int
        b: int

    calls = []

    @cached(path=sys.argv[1])
    def ask(q) -> Answer:
        calls.append(q)
        return Answer(text=q)

    @cached(path=sys.argv[1])
    def pair(n) -> list[Pair]:
        calls.append(n)
        return [Pair(n, n + 1)]

    a, p = ask("q"), pair(1)
    print(type(a).__name__, type(p[0]).__name__, (a, p) == (Answer(text="q"), [Pair(1, 2)]), len(calls))
"""


def test_models_and_dataclasses_come_back_as_themselves_under_strict_msgpack(tmp_path):
    path = str(tmp_path / "strict.db")
    env = {"LANGGRAPH_STRICT_MSGPACK": "true"}
    script = tmp_path / "strict.py"
    script.write_text(textwrap.dedent(STRICT))

    def run() -> str:
        out = subprocess.run(
            [sys.executable, str(script), path],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr
        assert "Blocked" not in out.stderr and "unregistered" not in out.stderr, out.stderr
        return out.stdout.strip()

    assert run() == "Answer Pair True 2"
    assert run() == "Answer Pair True 0"  # served from the file, with their types


def test_llm_cache_restart_hits_log_no_unregistered_type_warning(tmp_path):
    path = str(tmp_path / "llm.db")
    code = f"""
        import logging
        logging.basicConfig(level=logging.WARNING)
        from langchain_core.language_models.fake_chat_models import FakeListChatModel
        from fast_langgraph import FastLLMCache
        cache = FastLLMCache(path={path!r})
        model = FakeListChatModel(responses=["first", "second"], cache=cache)
        print(model.invoke("hi").content, cache.stats()["hits"])
    """
    assert _run(code) == "first 0"
    assert _run(code) == "first 1"  # a hit, and nothing on stderr


def test_a_value_that_reads_back_with_other_types_is_a_miss(tmp_path):
    path = str(tmp_path / "blocked.db")
    code = f"""
        from dataclasses import dataclass
        from fast_langgraph import RustLLMCache
        @dataclass
        class Secretive:
            x: int
        c = RustLLMCache(path={path!r})
        c.put("k", Secretive(1))
    """
    _run(code)
    # This process never stored a Secretive and was not told about it: the serializer may not
    # rebuild it, so the entry reads as a miss instead of a dict in its place.
    assert RustLLMCache(path=path).get("k", "miss") == "miss"


# ---- keys bound to the signature ----


def test_defaults_and_keywords_bind_to_one_entry():
    calls = []

    @cached
    def ask(q, model="m", *, temperature=0.0):
        calls.append((q, model, temperature))
        return f"{q}/{model}/{temperature}"

    assert ask("q") == ask("q", "m") == ask("q", model="m") == ask(model="m", q="q")
    assert ask("q", temperature=0.0) == "q/m/0.0"
    assert calls == [("q", "m", 0.0)]
    assert ask("q", "other") == "q/other/0.0"
    assert len(calls) == 2
    with pytest.raises(TypeError):
        ask("q", "m", model="m")
    with pytest.raises(TypeError):
        ask("q", nope=1)
    with pytest.raises(TypeError):
        ask()
    info = ask.cache_info()
    assert (info.hits, info.misses) == (4, 2)


def test_varargs_and_varkw_bind_too():
    calls = []

    @cached
    def f(a, *rest, b=1, **extra):
        calls.append(1)
        return (a, rest, b, extra)

    assert f(1, 2, 3, c=4) == f(1, 2, 3, b=1, c=4) == (1, (2, 3), 1, {"c": 4})
    assert f(1, c=4, d=5) == f(1, d=5, c=4)
    assert len(calls) == 2


async def test_async_functions_bind_to_their_signature():
    calls = []

    @cached
    async def ask(q, model="m"):
        calls.append(q)
        return q

    assert await ask("q") == await ask("q", "m") == await ask("q", model="m")
    assert calls == ["q"]
    with pytest.raises(TypeError):
        await ask()


# ---- statistics and close ----


def test_single_flight_waiters_count_as_hits():
    started = threading.Event()
    release = threading.Event()

    @cached
    def slow(q):
        started.set()
        release.wait(10)
        return q

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(slow, "q") for _ in range(8)]
        started.wait(10)
        time.sleep(0.05)  # let the others reach the wait
        release.set()
        assert [f.result() for f in futures] == ["q"] * 8
    info = slow.cache_info()
    assert (info.hits, info.misses) == (7, 1)


async def test_async_single_flight_waiters_count_as_hits():
    gate = asyncio.Event()

    @cached
    async def slow(q):
        await gate.wait()
        return q

    tasks = [asyncio.create_task(slow("q")) for _ in range(10)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.gather(*tasks) == ["q"] * 10
    info = slow.cache_info()
    assert (info.hits, info.misses) == (9, 1)


def test_close_a_persistent_cache(tmp_path):
    path = str(tmp_path / "c.db")
    with RustLLMCache(path=path) as c:
        c.put("k", 1)
    with pytest.raises(CacheError, match="closed"):
        c.put("k", 2)
    assert RustLLMCache(path=path).get("k") == 1
    llm = FastLLMCache(path=str(tmp_path / "llm.db"))
    llm.close()

    @cached(path=path)
    def f(x):
        return x

    assert f(1) == 1
    f.cache_close()
    with pytest.raises(CacheError, match="closed"):
        f(2)


# ---- parallel_map ----


def test_parallel_map_refuses_async_functions():
    async def fetch(x):
        return x

    with pytest.raises(TypeError, match=r"asyncio\.gather"):
        parallel_map(fetch, [1, 2, 3])


# ---- binding agrees with Python's own (hypothesis) ----


def _target(a, b=2, /, c=3, *rest, d, e=5, **extra):
    return (a, b, c, rest, d, e, sorted(extra.items()))


_NAMES = ["a", "b", "c", "d", "e", "f", "g"]


@settings(max_examples=300, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.lists(st.integers(0, 2), max_size=5),
            st.dictionaries(st.sampled_from(_NAMES), st.integers(0, 2), max_size=4),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_binding_matches_pythons_own(calls):
    f = cached(max_size=None)(_target)
    seen: set = set()
    for args, kwargs in calls:
        try:
            # The function itself is the reference: it returns its bound arguments.
            expected = _target(*args, **kwargs)
        except TypeError:
            with pytest.raises(TypeError):
                f(*args, **kwargs)
            continue
        assert f(*args, **kwargs) == expected
        seen.add(repr(expected))
        # One entry per distinct set of bound arguments, defaults applied.
        assert f.cache_info().currsize == len(seen)


def test_a_forked_child_opens_the_file_anew(tmp_path):
    c = RustLLMCache(max_size=None, path=str(tmp_path / "fork.db"))
    c.put("before", 1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            for i in range(200):
                c.put(f"child{i}", i)
            code = 0 if c.get("before") == 1 else 1
        finally:
            os._exit(code)
    for i in range(200):
        c.put(f"parent{i}", i)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    fresh = RustLLMCache(max_size=None, path=str(tmp_path / "fork.db"))
    assert len(fresh) == 401 and fresh.get("child199") == 199


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_fork_while_another_thread_writes_does_not_wait_on_its_lock(tmp_path):
    """The child never takes the lock the parent's writing thread held at the fork: closing
    the cache there returns at once. (It makes no SQLite call: a child forked while a parent
    thread is inside SQLite inherits SQLite's own mutexes as they were.)"""
    c = RustLLMCache(max_size=None, path=str(tmp_path / "fork.db"))
    c.put("before", 1)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            c.put(f"w{i % 50}", i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    codes = []
    try:
        for _ in range(10):
            time.sleep(0.005)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                code = 1
                try:
                    c.close()
                    code = 0
                finally:
                    os._exit(code)
            deadline = time.monotonic() + 30
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes.append(os.waitstatus_to_exitcode(status))
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    codes.append(None)  # hung
                    break
                time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    assert codes == [0] * 10
    assert c.get("before") == 1
