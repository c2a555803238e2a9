"""How RustPostgresCheckpointer stores channel versions (schema 9), written again in Python for
the tests that read or write its rows: an independent reading of the format that
``src/checkpoint/versions.rs`` documents.

A version is stored as a tag byte and a body: ``0x00`` and the UTF-8 text (any string), or
``0x40 | k`` / ``0x60 | k`` for a string of 32 ASCII digits (a counter below 2**63), a dot and a
rest of ``0-9 . e - +``: ``k`` big-endian bytes of the counter, then the rest in nibbles (``0x60``
when the rest starts with ``0.``, which is left out). A msgpack checkpoint payload whose
``channel_versions`` and ``versions_seen`` hold such compact versions (as bin values) has a type
tag ending in ``+v``.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

_TO_NIBBLE = str.maketrans(".e-+", "abcd")
_FROM_NIBBLE = str.maketrans("abcd", ".e-+")


def encode(version: str) -> bytes:
    """The stored form of ``version``."""
    m = re.fullmatch(r"([0-9]{32})\.([-+.0-9e]*)", version, flags=re.ASCII)
    if m is None or int(m[1]) >= 2**63:
        return b"\x00" + version.encode()
    n = int(m[1])
    counter = n.to_bytes((n.bit_length() + 7) // 8, "big")
    tag, rest = (0x60, m[2][2:]) if m[2].startswith("0.") else (0x40, m[2])
    nibbles = rest.translate(_TO_NIBBLE) + ("f" if len(rest) % 2 else "")
    return bytes([tag | len(counter)]) + counter + bytes.fromhex(nibbles)


def decode(stored: bytes) -> str:
    """The version stored as ``stored``."""
    stored = bytes(stored)
    tag = stored[0]
    if tag == 0:
        return stored[1:].decode()
    assert tag & 0xE0 in (0x40, 0x60) and tag & 0x1F <= 8, stored
    k = tag & 0x1F
    head = f"{int.from_bytes(stored[1 : 1 + k], 'big'):032}." + ("0." if tag & 0xE0 == 0x60 else "")
    nibbles = stored[1 + k :].hex()
    if nibbles.endswith("f"):
        nibbles = nibbles[:-1]
    assert "f" not in nibbles and "e" not in nibbles, stored
    return head + nibbles.translate(_FROM_NIBBLE)


def payload(tag: str, data: bytes) -> dict[str, Any]:
    """A stored checkpoint payload, decoded: inflated, and its compact versions restored."""
    data = bytes(data)
    if tag.endswith("+zlib"):
        tag, data = tag.removesuffix("+zlib"), zlib.decompress(data)
    compact = tag.endswith("+v")
    out = JsonPlusSerializer().loads_typed((tag.removesuffix("+v"), data))
    if compact:
        restore = lambda v: decode(v) if isinstance(v, bytes) else v  # noqa: E731
        if "channel_versions" in out:
            out["channel_versions"] = {k: restore(v) for k, v in out["channel_versions"].items()}
        if "versions_seen" in out:
            out["versions_seen"] = {
                node: {k: restore(v) for k, v in seen.items()}
                for node, seen in out["versions_seen"].items()
            }
    return out
