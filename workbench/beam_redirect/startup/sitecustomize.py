"""Loaded by every Python process that `workbench exec` starts (its folder is first on PYTHONPATH).

Why a sitecustomize on PYTHONPATH and not a .pth file: Python reads .pth files only in site-packages folders, so a
.pth would have to be written into the user's environment and would then act on every later process, exec or not;
PYTHONPATH reaches the exec'd process tree and nothing else, and leaves no trace.

It stays cheap for processes that never use Beam: standard library only, and nothing is patched until the process
imports apache_beam. Then workbench.beam_redirect.activate() redirects Beam's BigQuery IO to the local emulator,
refuses what cannot run locally, and (unless --stock-read) reads Pub/Sub through the workbench's local reader.
A sitecustomize this one shadows (a distribution's, a virtualenv's) is still run, first.
"""

import importlib.abc
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _run_shadowed_sitecustomize() -> None:
    for entry in sys.path:
        folder = os.path.abspath(entry or os.getcwd())
        candidate = os.path.join(folder, "sitecustomize.py")
        if folder != _HERE and os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_workbench_shadowed_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


def _activate() -> None:
    try:
        from workbench.beam_redirect import activate
    except Exception as exc:  # another interpreter, without the workbench installed: say so before Beam goes online
        sys.stderr.write(
            f"workbench exec: this Python ({sys.executable}) cannot load the workbench's Beam redirect "
            f"({type(exc).__name__}: {exc}); run the pipeline with the Python the workbench is installed in, "
            "e.g. `workbench exec -- /path/to/workbench-venv/bin/python my_pipeline.py`\n"
        )
        raise SystemExit(2) from None
    try:
        activate()
    except Exception as exc:  # a Beam whose internals moved: one line and the fix, not a traceback from our code
        version = getattr(sys.modules.get("apache_beam"), "__version__", "?")
        sys.stderr.write(
            f"workbench exec: the Beam redirect failed on apache-beam {version} ({type(exc).__name__}: {exc}); it "
            "was written for apache-beam 2.77: install that version in the pipeline's environment\n"
        )
        raise SystemExit(2) from None


class _AfterBeamImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps apache_beam's loader so that activate() runs once the package is imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "apache_beam":
            return None
        sys.meta_path.remove(self)  # once, and never in its own way while it looks the package up below
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Activating(spec.loader)
        return spec


class _Activating(importlib.abc.Loader):
    def __init__(self, real) -> None:
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.real  # Beam sees its own loader (package data)
        self.real.exec_module(module)
        _activate()


try:
    _run_shadowed_sitecustomize()
finally:
    if "apache_beam" in sys.modules:  # imported by the shadowed sitecustomize or a .pth file
        try:
            _activate()
        except SystemExit as stop:  # Python cannot exit cleanly while it is still starting up
            sys.stderr.flush()
            os._exit(stop.code if isinstance(stop.code, int) else 2)
    else:
        sys.meta_path.insert(0, _AfterBeamImport())
