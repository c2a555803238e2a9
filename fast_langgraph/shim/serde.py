"""A slot for the serializer patch: LangGraph's default serializer replaced by the Rust one.

It follows the same protocol as the other patches, over three functions that
``fast_langgraph/serde.py`` is to provide: ``install_default_serde() -> list[str]`` (the
targets changed), ``uninstall_default_serde()`` and ``default_serde_installed() -> bool``.
It is not wired yet: to wire it, add ``SerdePatch()`` to ``PATCHES`` in
``fast_langgraph/shim/__init__.py``, a ``serde`` setting (``FAST_LANGGRAPH_PATCH_SERDE``) to
``fast_langgraph/_settings.py``, and a ``serde`` argument to ``patch_langgraph``.
"""

from __future__ import annotations

import importlib

from fast_langgraph.shim._patch import Outcome, Patch

MODULE = "fast_langgraph.serde"


class SerdePatch(Patch):
    name = "serde"
    setting = "serde"

    def __init__(self) -> None:
        self.installed: list[str] = []

    def _module(self):  # type: ignore[no-untyped-def]
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
