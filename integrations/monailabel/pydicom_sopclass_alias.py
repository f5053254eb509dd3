"""
Serve ``pydicom._storage_sopclass_uids`` from ``pydicom.uid`` for pydicom 3 (MONAI Label's virtual environment).

pydicom 3 removed the private module ``pydicom._storage_sopclass_uids`` (its SOP class UIDs live in
``pydicom.uid`` since pydicom 2.3), but ``pydicom-seg`` 0.4.1, the newest release, still imports
``SegmentationStorage`` from it, and ``monailabel`` 0.8.5 imports ``pydicom_seg`` when its server starts.
``setup_env.py`` copies this file into the virtual environment's site-packages with a ``.pth`` line that
imports it at interpreter start-up; no installed package is modified.

The finder is appended to ``sys.meta_path``: it answers only when no installed pydicom provides the module
(pydicom < 3 does, and is then used as is), only for that one name, and imports pydicom only when the
module is first imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

__all__ = ["MODULE", "SopClassAliasFinder", "install"]

MODULE = "pydicom._storage_sopclass_uids"
"""The module name that pydicom 3 no longer has."""


class SopClassAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Meta path finder and loader of ``MODULE``: a module holding every ``pydicom.uid.UID`` constant."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname != MODULE:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        import pydicom.uid

        for name in dir(pydicom.uid):
            value = getattr(pydicom.uid, name)
            if isinstance(value, pydicom.uid.UID):
                setattr(module, name, value)


def install() -> None:
    """Append one ``SopClassAliasFinder`` to ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(finder, SopClassAliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(SopClassAliasFinder())


install()
