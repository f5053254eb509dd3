"""A misspelt option is refused with the closest known names."""

from __future__ import annotations

import pytest

from scripts.bundle import check_options


def test_a_misspelt_option_names_the_closest_ones():
    check_options(["val_fraction"], ["val_fraction", "test_fraction"])
    with pytest.raises(ValueError, match=r"unknown option 'val_fration' \(did you mean 'val_fraction' or 'test_fraction'\?\)"):
        check_options(["val_fration"], ["val_fraction", "test_fraction", "seed"])
