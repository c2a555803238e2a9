"""Imported at interpreter start by ``fast_langgraph_autopatch.pth`` when
``FAST_LANGGRAPH_AUTO_PATCH=1``: patches LangGraph with the configured settings. A failure warns
and leaves the interpreter running unpatched."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fast_langgraph.shim import PatchReport

REPORT: PatchReport | None

try:
    from fast_langgraph.shim import patch_langgraph

    REPORT = patch_langgraph()
except Exception as e:
    REPORT = None
    warnings.warn(
        f"FAST_LANGGRAPH_AUTO_PATCH: patching failed: {e!r}", RuntimeWarning, stacklevel=1
    )
