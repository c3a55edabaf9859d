"""Helpers shared by the unit tests."""

import importlib.util
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def load_script(relpath: str, name: str | None = None) -> ModuleType:
    """Import a Python script without a .py suffix (scripts/lab, a plugin) as a module."""
    path = REPO / relpath
    name = name or path.name.replace("-", "_")
    loader = SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
