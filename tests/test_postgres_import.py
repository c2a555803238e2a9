"""import_postgres_saver: a database the real PostgresSaver wrote, copied into our tables in
the same database; the stock tables are read, never written."""

from __future__ import annotations

import pytest
from conftest import cfg
from graph_apps import chat_app, interrupt_app, subgraph_app, thread_dump
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.types import Command

from fast_langgraph import RustPostgresCheckpointer

THREADS = ("chat", "ask", "sub")


def _stock_counts(pg_server, dbname):
    return pg_server.psql(
        "SELECT (SELECT count(*) FROM checkpoints), (SELECT count(*) FROM checkpoint_blobs), "
        "(SELECT count(*) FROM checkpoint_writes)",
        dbname,
    )


def test_import_postgres_saver(pg_server):
    dbname = pg_server.create_database("imp")
    url = pg_server.url(dbname)
    with PostgresSaver.from_conn_string(url) as ref:
        ref.setup()
        chat = chat_app(["one", "two"]).compile(checkpointer=ref)
        chat.invoke({"messages": [HumanMessage("a")]}, cfg("chat"))
        chat.invoke({"messages": [HumanMessage("b")]}, cfg("chat"))
        interrupt_app().compile(checkpointer=ref).invoke({"question": "q"}, cfg("ask"))
        subgraph_app().compile(checkpointer=ref).invoke({"log": []}, cfg("sub"))
        want = {t: thread_dump(ref, t) for t in THREADS}
        total = len(list(ref.list(None)))
    before = _stock_counts(pg_server, dbname)
    with RustPostgresCheckpointer(url) as ours:
        ours.setup()
        assert ours.import_postgres_saver(url) == total
        got = {t: thread_dump(ours, t) for t in THREADS}
        assert got == want
        # The paused runs resume on ours.
        final = interrupt_app().compile(checkpointer=ours).invoke(Command(resume="yes"), cfg("ask"))
        assert final["log"][-1] == "finish:yes"
        sub = subgraph_app().compile(checkpointer=ours).invoke(Command(resume="ok"), cfg("sub"))
        assert sub["approved"] == "ok"
        # Importing again changes nothing.
        ours.import_postgres_saver(url)
        assert len(list(ours.list(cfg("chat")))) == len(want["chat"])
    assert _stock_counts(pg_server, dbname) == before


def test_import_refuses_other_sources(pg_db):
    with RustPostgresCheckpointer(pg_db) as ours:
        ours.setup()
        with pytest.raises(TypeError, match="PostgresSaver"):
            ours.import_postgres_saver(42)
