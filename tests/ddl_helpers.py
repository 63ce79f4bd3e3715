"""Paths and helpers shared by the data-model tests (imported by name: tests/ddl is on sys.path under pytest)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ddl.apply import DDL_DIR

PROJECT = "ddl-test"
OPS_DIR = DDL_DIR / "ops"
REPO = DDL_DIR.parent


def sql_files() -> list[Path]:
    """The applied DDL, then the run-books."""
    return sorted(DDL_DIR.glob("*.sql")) + sorted(OPS_DIR.glob("*.sql"))


def load_render_script():
    """scripts/render_data_model.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("render_data_model", REPO / "scripts" / "render_data_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
