"""The import hook that MONAI Label's environment installs for pydicom-seg (integrations/monailabel): with the
bundle's pydicom 3, in a fresh interpreter (the hook is process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.bundle_cli import BUNDLE_ROOT

PROBE = """
import importlib, json, sys
import pydicom
result = {"pydicom": pydicom.__version__}
try:
    importlib.import_module("pydicom._storage_sopclass_uids")
    result["without"] = "imported"
except ModuleNotFoundError:
    result["without"] = "missing"
sys.path.insert(0, sys.argv[1])
import pydicom_sopclass_alias
pydicom_sopclass_alias.install()  # idempotent: still one finder
import pydicom.uid
from pydicom._storage_sopclass_uids import CTImageStorage, SegmentationStorage
result["finders"] = sum(isinstance(f, pydicom_sopclass_alias.SopClassAliasFinder) for f in sys.meta_path)
result["last"] = isinstance(sys.meta_path[-1], pydicom_sopclass_alias.SopClassAliasFinder)
result["seg"] = SegmentationStorage == pydicom.uid.SegmentationStorage == "1.2.840.10008.5.1.4.1.1.66.4"
result["ct"] = CTImageStorage == pydicom.uid.CTImageStorage
try:
    importlib.import_module("pydicom._no_such_module")
    result["other"] = "imported"
except ModuleNotFoundError:
    result["other"] = "missing"
print(json.dumps(result))
"""


def test_the_alias_serves_the_sop_class_uids_pydicom_3_removed_and_nothing_else():
    hook_dir = BUNDLE_ROOT / "integrations" / "monailabel"
    result = subprocess.run([sys.executable, "-c", PROBE, str(hook_dir)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "pydicom": "3.0.2",
        "without": "missing",
        "finders": 1,
        "last": True,
        "seg": True,
        "ct": True,
        "other": "missing",
    }
