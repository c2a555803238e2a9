"""The ``add_messages`` patch: channels whose reducer is LangGraph's ``add_messages`` use the
Rust reducer (``fast_langgraph.add_messages``), including graphs compiled before the patch:
LangGraph keeps the reducer inside its channel objects, so the patch wraps the channel class's
``operator`` slot rather than a module attribute. Other reducers are untouched."""

from __future__ import annotations

from fast_langgraph.shim._patch import Outcome, Patch

TARGET = "langgraph.channels.binop.BinaryOperatorAggregate.operator"


class AddMessagesPatch(Patch):
    name = "add_messages"
    setting = "add_messages"

    def __init__(self) -> None:
        self.installed = False  # by this patch (not by a direct call to fast_langgraph.merge)

    def apply(self) -> Outcome:
        from fast_langgraph import merge

        if not self.installed:
            if merge.is_rust_add_messages_installed():
                return Outcome(reason="already installed outside the shim (fast_langgraph.merge)")
            if not merge.install_rust_add_messages():
                return Outcome(
                    reason="langgraph's BinaryOperatorAggregate does not have the layout this relies on"
                )
            self.installed = True
        if not merge.is_rust_add_messages_installed():
            self.installed = False
            return Outcome(reason="the reducer swap did not take effect")
        return Outcome(targets=[TARGET])

    def revert(self) -> None:
        if self.installed:
            from fast_langgraph import merge

            merge.uninstall_rust_add_messages()
            self.installed = False

    def is_active(self) -> bool:
        from fast_langgraph import merge

        return merge.is_rust_add_messages_installed()

    def targets(self) -> list[str]:
        return [TARGET] if self.is_active() else []
