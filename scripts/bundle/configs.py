"""Where the bundle and its config files are, and the one ``ConfigParser`` builder of the bundle's tools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

__all__ = ["BUNDLE_ROOT", "CONFIG_DIR", "bundle_parser", "config_files"]

BUNDLE_ROOT = Path(__file__).resolve().parents[2]
"""The bundle's root folder (holding ``configs/``, ``models/`` and ``scripts/``)."""
CONFIG_DIR = BUNDLE_ROOT / "configs"


def config_files(*names: str) -> list[str]:
    """Absolute paths of ``configs/<name>`` for each name, e.g. ``config_files("train.yaml", "evaluate.yaml")``.

    Raises:
        FileNotFoundError: naming a config that does not exist.
    """
    paths = [CONFIG_DIR / name for name in names]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"bundle config(s) not found: {missing}")
    return [str(path) for path in paths]


def bundle_parser(configs: Sequence[str], overrides: Mapping[str, Any] | None = None) -> ConfigParser:
    """
    A ``ConfigParser`` over ``configs/<name>`` for each of ``configs`` (later files override earlier ones),
    with ``bundle_root`` set to ``BUNDLE_ROOT``, the metadata read as ``_meta_``, then ``overrides`` applied.
    """
    parser = ConfigParser()
    parser.read_meta(str(CONFIG_DIR / "metadata.json"))
    parser.read_config(config_files(*configs))
    parser.update({"bundle_root": str(BUNDLE_ROOT), **(overrides or {})})
    return parser
