"""Shared test fixtures: the bundle root and a small labelled phantom dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

BUNDLE_ROOT = Path(__file__).resolve().parents[1]
REAL_CT_DIR = BUNDLE_ROOT.parent / "shared" / "data" / "real_ct"


@pytest.fixture(autouse=True)
def _two_threads():
    """CI has 2 cores; more torch threads than cores only slows the tests down."""
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def bundle_root() -> Path:
    return BUNDLE_ROOT


@pytest.fixture(scope="session")
def phantom_source(tmp_path_factory) -> Path:
    """Four phantom cases of the source domain in MSD layout, generated once per test session."""
    from scripts.phantom import write_dataset

    return write_dataset(tmp_path_factory.mktemp("phantom") / "source", domain="source", cases=4, seed=0)
