"""Every ```python block in README.md and docs/*.md runs, in a fresh temporary directory."""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, m in enumerate(FENCE.finditer(doc.read_text())):
            out.append((f"{doc.relative_to(ROOT)}#{i + 1}", m.group(1)))
    return out


BLOCKS = _blocks()


def test_the_docs_have_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("name,code", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_doc_example_runs(name: str, code: str, tmp_path: Path) -> None:
    # A real module, so that typing can resolve the example's annotations.
    module = types.ModuleType("doc_example")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    sys.modules["doc_example"] = module
    try:
        exec(compile(code, name, "exec"), module.__dict__)
    finally:
        del sys.modules["doc_example"]
        os.chdir(cwd)
