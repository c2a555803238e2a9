"""RustSerializer's decoder against the decoder of another build of the extension, in one process.

For measuring a decoder change on a loaded machine, where two processes a minute apart differ
by more than the change: both builds' codecs decode the same bytes, alternating call by call,
and the medians are compared. Two values, as the long-chat read path sees them:

- a 1,000-message chat history (benches/bench_serde.py's ``history``), 309 KB packed;
- a ``DeltaChannel`` snapshot (``_DeltaSnapshot``) of the same 1,000 messages.

Before timing, both builds' results are checked to be equal.

Build the other revision first and keep a copy of its extension, e.g.::

    git stash  # or check out the earlier revision's src/
    make dev && cp fast_langgraph/_native.cpython-311-x86_64-linux-gnu.so /tmp/before.so
    git stash pop && make dev

Run: .venv/bin/python benches/bench_serde_decode_ab.py /tmp/before.so [--rounds N]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

from langgraph.checkpoint.serde.types import _DeltaSnapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serde import history

import fast_langgraph.serde as fs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before", help="path of the other build's _native extension module")
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("fast_langgraph._native", args.before)
    assert spec is not None and spec.loader is not None
    before_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(before_mod)
    s = fs.RustSerializer()
    after = s._codec()
    before = before_mod.MsgpackCodec(
        fs._jp._msgpack_enc,
        s._unpack_ext_hook,
        True,
        fs._FALLBACK,
        fs._SPECS,
        fs._NATIVES,
        fs._SAFE,
        fs._SAFE_METHODS,
    )
    h = history(1000)
    for name, value in [
        ("1,000-message history", h),
        ("DeltaChannel snapshot, 1,000 messages", _DeltaSnapshot(h)),
    ]:
        data = s.dumps_typed(value)[1]
        got_before, got_after = before.decode(data), after.decode(data)
        assert got_after is not fs._FALLBACK and got_before == got_after
        times: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for key, codec in (("before", before), ("after", after)):
                t0 = time.perf_counter()
                codec.decode(data)
                times[key].append(time.perf_counter() - t0)
        mb = statistics.median(times["before"]) * 1e6
        ma = statistics.median(times["after"]) * 1e6
        print(f"{name}: before {mb:,.0f} us, after {ma:,.0f} us ({(1 - ma / mb) * 100:.1f}% less)")


if __name__ == "__main__":
    main()
