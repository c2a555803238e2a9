"""The serializer patch: savers and node caches that LangGraph builds without a serializer use
``RustSerializer`` (``fast_langgraph.serde``), which writes the same bytes as LangGraph's
``JsonPlusSerializer``. The change is to the class attribute ``serde`` that every saver and
cache takes its default from (``fast_langgraph.serde.install_default_serde``); savers and caches
built before the patch keep the serializer they have.
"""

from __future__ import annotations

import importlib
from typing import Any

from fast_langgraph.shim._patch import Outcome, Patch

MODULE = "fast_langgraph.serde"


class SerdePatch(Patch):
    name = "serde"
    setting = "serde"

    def __init__(self) -> None:
        self.installed: list[str] = []

    def _module(self) -> Any:
        return importlib.import_module(MODULE)

    def apply(self) -> Outcome:
        try:
            serde = self._module()
        except ImportError as e:
            return Outcome(reason=f"{MODULE} is not available ({e})")
        if not self.installed:
            self.installed = list(serde.install_default_serde())
        if not serde.default_serde_installed():
            self.installed = []
            return Outcome(reason="the serializer swap did not take effect")
        return Outcome(targets=list(self.installed))

    def revert(self) -> None:
        if self.installed:
            self._module().uninstall_default_serde()
            self.installed = []

    def is_active(self) -> bool:
        try:
            return bool(self._module().default_serde_installed())
        except ImportError:
            return False

    def targets(self) -> list[str]:
        return list(self.installed) if self.is_active() else []
