"""
Make (or reuse) the Python environment that runs ``deploy/app.py``, and print its interpreter.

    python deploy/venv.py [--venv <folder>]

The MONAI Deploy App SDK (``deploy/requirements.txt``) does not go into the bundle's environment: its
``tritonclient[all]`` needs protobuf<7 and would downgrade the protobuf 7 that onnx, onnxruntime and tensorboard use
there. So this makes a virtual environment *over* the bundle's (``--system-site-packages``: torch, monai's
dependencies, pydicom, highdicom, ... are the bundle's own, not copies) that holds the SDK's packages, and:

- its own copy of ``monai``, the bundle environment's version: ``monai-deploy-app-sdk`` installs ``monai/deploy``
  into the ``monai`` package, which must therefore live in the virtual environment too;
- ``filelock`` (the bundle environment's version): holoscan's ``.pth`` start-up hook imports it before the bundle's
  site-packages are on ``sys.path``;
- no ``setuptools`` of its own, so that the bundle's (newer, which torch asks for) is the one seen.

Where: ``--venv``, else ``$PANCREAS_DEPLOY_VENV``, else ``~/.cache/pancreas_ct_dualssl/deploy-venv``. It is reused
while its stamp (``pancreas_ct_dualssl.json``: requirements, base interpreter, monai version) still matches, and
rebuilt otherwise; the stamp is written last, so an interrupted build is redone. When the current interpreter can
already import ``monai.deploy`` it is printed and nothing is made.

Exit status 0 with the interpreter's path as the last line of stdout; 1 with the reason (e.g. pip could not reach
the package index) otherwise.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BUNDLE_ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = BUNDLE_ROOT / "deploy" / "requirements.txt"
DEFAULT_VENV = Path.home() / ".cache" / "pancreas_ct_dualssl" / "deploy-venv"
STAMP_NAME = "pancreas_ct_dualssl.json"

__all__ = ["DEFAULT_VENV", "REQUIREMENTS", "VenvError", "deploy_python", "expected_stamp"]


class VenvError(RuntimeError):
    """The environment could not be made; the message says which step failed and its output."""


def expected_stamp() -> dict[str, str]:
    """What a usable environment was built from: the requirements, the base interpreter and its monai."""
    return {
        "requirements_sha256": hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest(),
        "base_python": os.path.realpath(sys.executable),
        "python_version": sys.version.split()[0],
        "monai": importlib.metadata.version("monai"),
    }


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _run(step: str, args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise VenvError(f"{step} failed ({result.returncode}): {' '.join(args)}\n{output[-3000:]}")


def _is_current(venv: Path, stamp: dict[str, str]) -> bool:
    try:
        recorded = json.loads((venv / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return False
    return recorded == stamp and _venv_python(venv).is_file()


def _has_deploy_sdk() -> bool:
    """Whether this interpreter's ``monai`` package holds ``monai.deploy`` (without importing monai: seconds)."""
    spec = importlib.util.find_spec("monai")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return any((Path(location) / "deploy" / "__init__.py").is_file() for location in locations)


def deploy_python(venv: Path | None = None) -> Path:
    """
    The interpreter that runs ``deploy/app.py``: the current one if it imports ``monai.deploy``, else that of the
    virtual environment ``venv`` (made or rebuilt when missing or stale; see the module).

    Raises:
        VenvError: naming the step that failed (creating the environment, pip, the import check).
    """
    if _has_deploy_sdk():
        return Path(sys.executable)
    venv = Path(venv or os.environ.get("PANCREAS_DEPLOY_VENV") or DEFAULT_VENV).expanduser().absolute()
    stamp = expected_stamp()
    if _is_current(venv, stamp):
        return _venv_python(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a second caller waits and reuses it
        if _is_current(venv, stamp):
            return _venv_python(venv)
        shutil.rmtree(venv, ignore_errors=True)
        python = str(_venv_python(venv))
        print(f"making {venv} (monai-deploy-app-sdk, {REQUIREMENTS.name})", file=sys.stderr)
        _run("creating the virtual environment", [sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
        _run("removing the virtual environment's setuptools", [python, "-m", "pip", "uninstall", "-y", "-q", "setuptools"])
        base = [f"monai=={stamp['monai']}", f"filelock=={importlib.metadata.version('filelock')}"]
        pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run("installing monai and filelock into it", pip + ["--no-deps", "--ignore-installed", *base])
        _run(f"installing {REQUIREMENTS}", pip + ["-r", str(REQUIREMENTS)])
        check = "import monai, monai.deploy, holoscan; print(monai.__version__)"
        result = subprocess.run([python, "-c", check], capture_output=True, text=True)
        if result.returncode != 0 or result.stdout.strip().splitlines()[-1:] != [stamp["monai"]]:
            raise VenvError(f"{venv} cannot import monai {stamp['monai']} with monai.deploy:\n{result.stderr[-3000:]}")
        _run("pip check", [python, "-m", "pip", "check"])
        partial = venv / f".{STAMP_NAME}.partial"
        partial.write_text(json.dumps(stamp, indent=1) + "\n")
        os.replace(partial, venv / STAMP_NAME)
    return _venv_python(venv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=None, help=f"the environment's folder (default {DEFAULT_VENV})")
    args = parser.parse_args(argv)
    try:
        print(deploy_python(args.venv))
    except VenvError as error:
        print(f"deploy/venv.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
