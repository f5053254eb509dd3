"""Run ``python -m monai.bundle`` commands from the bundle root, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BUNDLE_ROOT = Path(__file__).resolve().parents[1]
REAL_CT = BUNDLE_ROOT.parent / "shared" / "data" / "real_ct"
"""Real CT samples beside the project (tests that read them skip when the folder is absent)."""


def cli_value(value) -> str:
    """Format an override for the command line (lists and bools as JSON/Python literals)."""
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return str(value)


def run_bundle(command: str, config_files: list[str], timeout: int = 600, **overrides) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <command> --config_file [...] --key value ...``; raises with the log on failure."""
    configs = [str(BUNDLE_ROOT / "configs" / name) for name in config_files]
    args = [sys.executable, "-m", "monai.bundle", command, "--config_file", json.dumps(configs)]
    args += ["--meta_file", str(BUNDLE_ROOT / "configs" / "metadata.json")]
    for key, value in overrides.items():
        args += [f"--{key}", cli_value(value)]
    result = subprocess.run(args, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result
