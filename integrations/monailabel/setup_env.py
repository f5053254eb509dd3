"""
Build (once) and find the virtual environment in which MONAI Label 0.8.5 serves this bundle.

    python integrations/monailabel/setup_env.py            # builds it if needed, prints its python
    python integrations/monailabel/setup_env.py --venv DIR # another place

MONAI Label cannot be installed beside the bundle with plain ``pip install monailabel``; each blocker and its
workaround (docs/monailabel.md):

1. ``torchvision``: monailabel imports it on the bundle app's path (``monailabel.transform.post``, imported by
   ``monailabel.tasks.infer.bundle``). The only torchvision 0.28 (the release paired with torch 2.13) on the
   package index is a CUDA build whose ``_C.so`` links ``libtorch_cuda.so``: beside the CPU build of torch its
   import fails (``operator torchvision::nms does not exist``). The environment takes the CUDA builds of
   torch 2.13.0 and torchvision 0.28.0 (they run on CPU): pip's ``find-links`` is pointed at an empty folder
   while installing, so that a local ``torch-2.13.0+cpu`` wheel cannot win over the index's build.
2. ``pydicom-seg`` 0.4.1 (the newest) caps ``numpy<2`` and ``jsonschema<4``: installed with ``--no-deps``
   beside the bundle's numpy 2.4.6 and jsonschema 4.26.0 (the caps are not incompatibilities: monailabel only
   imports it here; its real run-time requirement SimpleITK is installed).
3. ``pydicom-seg`` imports ``pydicom._storage_sopclass_uids``, which pydicom 3 removed (the bundle needs
   pydicom 3: ``scripts.data.dicom`` uses ``pydicom.pixels``): ``pydicom_sopclass_alias.py`` and a ``.pth``
   line that imports it are written into the environment's site-packages; its import hook serves that one
   module from ``pydicom.uid``. No installed package is modified.
4. ``monailabel`` 0.8.5 itself: installed with ``--no-deps`` (its requirements pull ``sam2``, monai's extras and
   the torchvision above); ``requirements.txt`` beside this file lists what its server, the ``monaibundle``
   app's infer and train tasks import, with the bundle's own pins.

The environment is kept under ``~/.cache/pancreas_ct_dualssl/`` (or ``$PANCREAS_MONAILABEL_VENV``) in a folder
named after a hash of everything it is built from, so a second run finds it; a build that did not finish is
removed and redone.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = [
    "HERE",
    "MONAILABEL",
    "EnvironmentBuildError",
    "cache_key",
    "default_venv_dir",
    "ensure_environment",
    "venv_python",
]

HERE = Path(__file__).resolve().parent
BUNDLE_ROOT = HERE.parents[1]
MONAILABEL = "monailabel==0.8.5"
TORCH = ("torch==2.13.0", "torchvision==0.28.0")
NO_DEPS = (MONAILABEL, "pydicom-seg==0.4.1")
REQUIREMENTS = HERE / "requirements.txt"
ALIAS_MODULE = HERE / "pydicom_sopclass_alias.py"
COMPLETE = ".complete.json"
"""Written last: a folder without it is an unfinished build."""

CHECK_IMPORTS = (
    "import torch, torchvision, pydicom, pydicom_seg, itk, monai, monailabel;"
    "import monailabel.app, monailabel.tasks.infer.bundle, monailabel.tasks.train.bundle, monailabel.transform.writer;"
    "import json, numpy; print(json.dumps({m.__name__: m.__version__ for m in "
    "(torch, torchvision, numpy, pydicom, monai, monailabel)}))"
)
"""What the environment must import: the server (``monailabel.app``), the bundle app's tasks, the writer."""


class EnvironmentBuildError(RuntimeError):
    """The environment could not be built (a pip step failed, or the result does not import)."""


def cache_key() -> str:
    """A hash of what the environment is built from: this file, the alias module, both requirement files, Python."""
    digest = hashlib.sha256()
    for path in (Path(__file__).resolve(), ALIAS_MODULE, REQUIREMENTS, BUNDLE_ROOT / "requirements.txt"):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:12]


def default_venv_dir() -> Path:
    """``$PANCREAS_MONAILABEL_VENV``, else ``~/.cache/pancreas_ct_dualssl/monailabel-0.8.5-<cache_key()>``."""
    if os.environ.get("PANCREAS_MONAILABEL_VENV"):
        return Path(os.environ["PANCREAS_MONAILABEL_VENV"]).expanduser()
    return Path.home() / ".cache" / "pancreas_ct_dualssl" / f"monailabel-0.8.5-{cache_key()}"


def venv_python(venv: Path) -> Path:
    """The environment's interpreter."""
    return venv / "bin" / "python"


def _run(command: list[str], step: str, env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise EnvironmentBuildError(f"{step}: no result after {timeout:.0f} s ({' '.join(command)})") from error
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).splitlines()
        output = "\n".join(line for line in lines if "ignored: it is" not in line)  # pip's notes on absent mirrors
        raise EnvironmentBuildError(f"{step} failed ({result.returncode}): {' '.join(command)}\n{output[-3000:]}")
    return result.stdout


def _build(venv: Path, log) -> dict:
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", str(venv)], "creating the virtual environment")
    python = str(venv_python(venv))
    with tempfile.TemporaryDirectory() as no_links:
        # an empty find-links folder replaces the configured ones (blocker 1: no local +cpu torch wheel)
        env = {**os.environ, "PIP_FIND_LINKS": no_links, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        pip = [python, "-m", "pip", "install", "--quiet"]
        log(f"installing {' '.join(TORCH)} (CUDA builds; they run on CPU)")
        _run(pip + list(TORCH), "installing torch and torchvision", env)
        log(f"installing {REQUIREMENTS.relative_to(BUNDLE_ROOT)}")
        _run(pip + ["-r", str(REQUIREMENTS)], "installing the requirements", env)
        log(f"installing {' '.join(NO_DEPS)} with --no-deps")
        _run(pip + ["--no-deps", *NO_DEPS], "installing monailabel and pydicom-seg", env)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(_run([python, "-c", purelib], "finding site-packages").strip())
    shutil.copy2(ALIAS_MODULE, site_packages / ALIAS_MODULE.name)
    (site_packages / "pydicom_sopclass_alias.pth").write_text("import pydicom_sopclass_alias\n")
    versions = json.loads(_run([python, "-c", CHECK_IMPORTS], "importing MONAI Label").strip().splitlines()[-1])
    record = {"key": cache_key(), "versions": versions, "build_seconds": round(time.monotonic() - started, 1)}
    (venv / COMPLETE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def ensure_environment(venv: Path | None = None, log=None) -> Path:
    """
    The interpreter of MONAI Label's environment at ``venv`` (``default_venv_dir()``), built first when that
    folder holds no finished build. Concurrent callers wait on a lock file beside the folder.

    Raises:
        EnvironmentBuildError: a step failed; the message names it and ends with pip's output.
    """
    venv = Path(venv) if venv is not None else default_venv_dir()
    log = log or (lambda message: None)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / COMPLETE).is_file() and venv_python(venv).exists():
            log(f"using {venv} ({(venv / COMPLETE).read_text().strip()})")
            return venv_python(venv)
        if venv.exists():
            log(f"removing the unfinished build {venv}")
            shutil.rmtree(venv)
        log(f"building {venv}")
        try:
            record = _build(venv, log)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        log(f"built in {record['build_seconds']} s: {record['versions']}")
        return venv_python(venv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--venv", type=Path, default=None, help="where the environment goes (default: the cache)")
    args = parser.parse_args(argv)
    try:
        python = ensure_environment(args.venv, log=lambda message: print(message, file=sys.stderr, flush=True))
    except EnvironmentBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
