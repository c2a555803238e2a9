"""Loads a graph from "path/to/app.py:attr" or "package.module:attr"."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


class TargetError(Exception):
    """The target does not name a compiled graph (or a function returning one)."""


def split_target(target: str) -> tuple[str, str]:
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise TargetError(
            f"{target!r} is not of the form path/to/app.py:graph or package.module:graph"
        )
    return where, attr


def load_module(where: str) -> ModuleType:
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).resolve()
        if not path.is_file():
            raise TargetError(f"no such file: {where}")
        name = "_flg_app_" + path.stem
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot load {where} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # so the app can import its neighbours
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if e.name and where.startswith(e.name):
            raise TargetError(
                f"no module named {where!r} (give a file path or a module importable from here)"
            ) from e
        raise


def resolve(target: str) -> tuple[ModuleType, Any]:
    """The module and the compiled graph a target names. A callable attribute that is not a
    graph is called with no arguments and must return one."""
    from langgraph.pregel import Pregel

    where, attr = split_target(target)
    module = load_module(where)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in vars(module) if not n.startswith("_"))
            raise TargetError(
                f"{where} has no attribute {attr!r} (it defines: {', '.join(names[:20])})"
            )
        obj = getattr(obj, part)
    if not isinstance(obj, (Pregel, type)) and callable(obj) and not hasattr(obj, "compile"):
        built = obj()
        if not isinstance(built, Pregel):
            raise TargetError(
                f"{target} returned a {type(built).__module__}.{type(built).__qualname__}, "
                "not a compiled LangGraph graph"
            )
        return module, built
    if not isinstance(obj, Pregel):
        hint = " (call .compile() on it)" if hasattr(obj, "compile") else ""
        what = (
            f"the class {obj.__qualname__}"
            if isinstance(obj, type)
            else f"a {type(obj).__module__}.{type(obj).__qualname__}"
        )
        raise TargetError(f"{target} is {what}, not a compiled LangGraph graph{hint}")
    return module, obj


def target_of(build_graph: Any) -> str:
    """A target string a child process can load, for a callable or a target string."""
    if isinstance(build_graph, str):
        split_target(build_graph)
        return build_graph
    module = getattr(build_graph, "__module__", None)
    qualname = getattr(build_graph, "__qualname__", None)
    if not callable(build_graph) or not module or not qualname or "<locals>" in qualname:
        raise TypeError(
            "compare() needs build_graph as a module-level function (or a "
            "'path/to/app.py:build_graph' string), so that another process can import it"
        )
    if module == "__main__" or module.startswith("_flg_app_"):
        file = getattr(sys.modules.get(module), "__file__", None)
        if not file:
            raise TypeError(
                f"{qualname} is defined in a module with no file; pass "
                "'path/to/app.py:build_graph' instead"
            )
        path = Path(file).resolve()
        try:  # shorter to read in reports; the child process runs in the same directory
            path = path.relative_to(Path.cwd())
        except ValueError:
            pass
        return f"{path}:{qualname}"
    return f"{module}:{qualname}"
