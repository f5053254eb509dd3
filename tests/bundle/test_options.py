"""A misspelt option is refused with the closest known names; so is a bool option fire would pass on as a string."""

from __future__ import annotations

import sys

import pytest

from scripts.bundle import check_flags, check_options, run_command_line


def test_a_misspelt_option_names_the_closest_ones():
    check_options(["val_fraction"], ["val_fraction", "test_fraction"])
    with pytest.raises(ValueError, match=r"unknown option 'val_fration' \(did you mean 'val_fraction' or 'test_fraction'\?\)"):
        check_options(["val_fration"], ["val_fraction", "test_fraction", "seed"])


def _evaluate(output_dir: str = "eval", overwrite: bool = False, repeats: int = 1) -> None:
    """A command-line function with a bool parameter."""


@pytest.mark.parametrize(
    "argv", [[], ["--overwrite"], ["--overwrite", "True"], ["--overwrite=False"], ["--repeats", "3"]]
)
def test_flags_of_the_right_kind_pass(argv):
    check_flags(argv, _evaluate)


@pytest.mark.parametrize("value", ["false", "true", "no", "0"])
def test_a_bool_flag_with_a_value_fire_would_pass_on_as_a_string_is_refused(value):
    # fire gives --overwrite false to the function as the string "false", which is truthy: it would overwrite
    with pytest.raises(ValueError, match=rf"--overwrite '{value}': expected True or False"):
        check_flags(["--output_dir", "x", "--overwrite", value], _evaluate)


def test_an_unknown_flag_is_refused_before_its_type_is_looked_at():
    with pytest.raises(ValueError, match=r"unknown option 'overwrit' \(did you mean 'overwrite'\?\)"):
        check_flags(["--overwrit", "false"], _evaluate)


def test_run_command_line_checks_the_flags_of_the_named_command_before_fire_runs_it(monkeypatch, capsys):
    calls = []

    def prepare(root: str = ".", download: bool = False) -> None:
        calls.append((root, download))

    commands = {"msd": prepare, "evaluate": _evaluate}
    monkeypatch.setattr(sys, "argv", ["prog", "msd", "--root", "r", "--download", "false"])
    with pytest.raises(SystemExit, match=r"error: option\(s\) of the wrong type: --download 'false': expected True"):
        run_command_line(commands)
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["prog", "msd", "--root", "r", "--download", "False"])
    run_command_line(commands)
    assert calls == [("r", False)]
    monkeypatch.setattr(sys, "argv", ["prog", "evaluate", "--overwrit"])
    with pytest.raises(SystemExit, match="did you mean 'overwrite'"):
        run_command_line(commands)
