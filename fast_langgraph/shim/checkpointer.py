"""The checkpointer patch: ``SqliteSaver(...)`` and ``AsyncSqliteSaver(...)`` (and their
``from_conn_string``) build savers accelerated in place, on the user's own file in
``langgraph-checkpoint-sqlite``'s schema (``fast_langgraph/shim/_sqlite.py``).

A saver built before the patch (for example by a graph compiled at import time), or of a
user's own subclass, keeps stock code: ``notes()`` names them, so the report and ``status()``
say which savers the patch cannot reach."""

from __future__ import annotations

from typing import Any

from fast_langgraph.shim._patch import Outcome, Patch


class CheckpointerPatch(Patch):
    name = "checkpointer"
    setting = "checkpointer"

    def __init__(self) -> None:
        self.saved: dict[type, dict[str, Any]] | None = None
        self.patched: list[str] = []

    def apply(self) -> Outcome:
        if self.saved is not None:
            return Outcome(targets=self.targets())
        try:
            from fast_langgraph.shim import _sqlite
        except ImportError as e:
            return Outcome(reason=f"langgraph-checkpoint-sqlite is not installed ({e})")
        self.saved, self.patched = _sqlite.install()
        return Outcome(targets=self.targets())

    def revert(self) -> None:
        if self.saved is None:
            return
        from fast_langgraph.shim import _sqlite

        _sqlite.uninstall(self.saved)
        self.saved, self.patched = None, []

    def is_active(self) -> bool:
        return bool(self.targets())

    def targets(self) -> list[str]:
        if self.saved is None:
            return []
        from fast_langgraph.shim import _sqlite

        return [
            f"{cls.__module__}.{cls.__qualname__}"
            for cls in self.saved
            if _sqlite.is_installed(cls)
        ]

    def unreached(self) -> list[str]:
        """Live savers this patch does not accelerate, described."""
        try:
            from fast_langgraph.shim import _sqlite
        except ImportError:
            return []
        return [_sqlite.describe(s) for s in _sqlite.stock_instances()]

    def notes(self) -> list[str]:
        from fast_langgraph.shim import _sqlite

        out = []
        unreached = self.unreached()
        if unreached:
            out.append(
                f"{len(unreached)} saver(s) built before the patch, or of a subclass, keep stock "
                f"code: {', '.join(unreached)}"
            )
        if _sqlite.unshareable_reason():
            out.append(f"savers stay on stock code: {_sqlite.unshareable_reason()}")
        return out
