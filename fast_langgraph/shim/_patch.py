"""The protocol every patch of the shim follows, so that ``patch_langgraph()``, ``status()``
and ``unpatch_langgraph()`` treat them alike.

A patch is one object (see ``PATCHES`` in ``fast_langgraph/shim/__init__.py``) with a
``name`` (the key in ``PatchReport`` and ``status()``), a ``setting`` (the
``fast_langgraph.configure`` / ``FAST_LANGGRAPH_PATCH_*`` switch that turns it on), and:

- ``apply()``: make the change (idempotent) and return an ``Outcome``;
- ``revert()``: put every original back (idempotent);
- ``is_active()``: whether the change is in effect now, checked against the live modules;
- ``targets()``: what it changed, as live now;
- ``notes()``: what it cannot reach or change, in words, for the report and ``status()``.

Adding a patch is one module with such a class and one line in ``PATCHES`` (and its setting
in ``fast_langgraph/_settings.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    """What ``apply()`` did: ``targets`` changed, or ``reason`` why nothing was."""

    targets: list[str] = field(default_factory=list)
    reason: str = ""


class Patch:
    """Base class of the shim's patches; see the module docstring."""

    name: str = ""
    setting: str = ""

    def apply(self) -> Outcome:  # pragma: no cover - every patch defines it
        raise NotImplementedError

    def revert(self) -> None:  # pragma: no cover - every patch defines it
        raise NotImplementedError

    def is_active(self) -> bool:  # pragma: no cover - every patch defines it
        raise NotImplementedError

    def targets(self) -> list[str]:
        return []

    def notes(self) -> list[str]:
        return []
