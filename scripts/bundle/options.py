"""Refuse names that nothing defines (a misspelt option, or a config key overridden on the command line), naming the closest known ones."""

from __future__ import annotations

import ast
import difflib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import fire
from monai.bundle import ConfigParser
from monai.bundle.utils import ID_SEP_KEY

__all__ = [
    "check_bool_values", "check_flags", "check_options", "closest", "command_line_overrides", "config_ids",
    "refuse_unknown_overrides", "run_command_line",
]


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` entries of ``known`` that look most like ``name`` (``difflib``, cutoff 0.6)."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)


def check_options(
    given: Iterable[str], known: Iterable[str], what: str = "option", suggestions: Iterable[str] | None = None
) -> None:
    """
    Raises:
        ValueError: naming every entry of ``given`` that is not in ``known``, each with its closest names among
            ``suggestions`` (default ``known``), e.g. ``unknown option 'val_fration' (did you mean 'val_fraction'?)``.
    """
    known = set(known)
    pool = sorted(known if suggestions is None else suggestions)
    unknown = [name for name in given if name not in known]
    if unknown:
        parts = []
        for name in unknown:
            near = closest(name, pool)
            parts.append(f"{name!r}" + (f" (did you mean {' or '.join(repr(k) for k in near)}?)" if near else ""))
        raise ValueError(f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(parts)}")


def check_bool_values(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """
    Refuse a value of ``values`` (a command-line string or what fire made of it) for a name whose ``defaults`` entry
    is a bool, unless it is one: ``--overwrite false`` reaches a function as the string ``'false'``, which counts as
    true. An empty string (the flag alone, which fire makes True) passes.

    Raises:
        ValueError: naming each such flag and its value.
    """
    wrong = []
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(default, bool) and not isinstance(value, bool) and value != "":
            problem = _type_problem(default, str(value), "the default")
            if problem:
                wrong.append(f"--{key} {value!r}: {problem}")
    if wrong:
        raise ValueError("option(s) of the wrong type: " + "; ".join(wrong))


def check_flags(argv: Sequence[str], function: Callable) -> None:
    """
    Refuse, before ``fire`` calls ``function``, a ``--flag`` of ``argv`` that is no parameter of it (fire would run
    the function first and complain about the extra flag afterwards; a function with ``**options`` checks those
    itself), and a value of a ``bool`` parameter that fire would pass on as a string (``check_bool_values``).

    Raises:
        ValueError: naming the unknown flags and the closest parameters, or the flags with a value that is no bool.
    """
    parameters = inspect.signature(function).parameters
    named = {name: p.default for name, p in parameters.items() if p.kind != p.VAR_KEYWORD}
    _, flags = command_line_overrides(argv)
    if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        check_options([key for key in flags if key not in ("help", "h")], named, what="option")
    check_bool_values(flags, named)


def run_command_line(command: Callable | dict[str, Callable], **fire_kwargs: Any) -> None:
    """
    ``fire.Fire(command, **fire_kwargs)`` on ``sys.argv``, after ``check_flags``: a misspelt flag or a bool flag
    fire would pass on as a string ends the process with ``error: <message>`` (exit status 1) before anything runs.
    ``command`` is a function or ``{name: function}`` (``sys.argv[1]`` names the function; fire answers a missing
    or unknown name).
    """
    argv, function = sys.argv[1:], command
    if isinstance(command, dict):
        function = command.get(argv[0]) if argv else None
        argv = argv[1:]
    if function is not None:
        try:
            check_flags(argv, function)
        except ValueError as error:
            sys.exit(f"error: {error}")
    fire.Fire(command, **fire_kwargs)


RUN_ARGUMENTS = frozenset(
    {
        "run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file",
        "workflow_name", "workflow_type", "properties_path",
    }
)
"""Flags of ``python -m monai.bundle run`` that are not config ids."""


def _config_files(value: str) -> list[str]:
    """The ``--config_file`` value as MONAI reads it: a path, a Python/JSON list of paths, or comma-separated."""
    value = value.strip()
    if value.startswith("["):
        return [str(v) for v in ast.literal_eval(value)]
    return value.split(",") if "," in value and not Path(value).is_file() else [value]


def command_line_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The config files and the ``--key value`` / ``--key=value`` flags of a ``monai.bundle run`` command line."""
    flags: dict[str, str] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg.startswith("--") and len(arg) > 2:
            key, sep, value = arg[2:].partition("=")
            if not sep and index + 1 < len(argv) and not argv[index + 1].startswith("--"):
                value, index = argv[index + 1], index + 1
            flags[key] = value
        index += 1
    return (_config_files(flags["config_file"]) if "config_file" in flags else []), flags


def config_ids(content: Any, prefix: str = "") -> set[str]:
    """Every id of a config's content (``a``, ``a#b``, ``a#0#c``, ...), as overrides name them."""
    ids = set()
    items = content.items() if isinstance(content, dict) else enumerate(content) if isinstance(content, list) else ()
    for key, value in items:
        name = f"{prefix}{ID_SEP_KEY}{key}" if prefix else str(key)
        ids.add(name)
        ids |= config_ids(value, name)
    return ids


def refuse_unknown_overrides(argv: Sequence[str] | None = None) -> None:
    """
    In a ``python -m monai.bundle run`` process, refuse every ``--key`` that names no id of its config files (and no
    flag of ``run`` itself), before anything runs. Elsewhere (a tool building the workflow in Python, a test)
    nothing is checked: the command line is not the bundle's.

    The configs call it first in ``initialize``: ``$scripts.bundle.refuse_unknown_overrides()``.

    Raises:
        ValueError: naming each unknown key and the closest ids, e.g.
            ``unknown config key 'roi_sise' (did you mean 'roi_size'?)``; nested ids are written ``a::b``
            (MONAI's separator; ``a#b`` on the command line is the same id).
    """
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or not argv[0].replace("\\", "/").endswith("monai/bundle/__main__.py") or argv[1] != "run":
        return
    files, flags = command_line_overrides(argv[2:])
    if not files:
        return
    content = ConfigParser.load_config_files(files)
    ids = config_ids(content)
    named = {i for i in ids if not i.rpartition(ID_SEP_KEY)[2].isdigit()}  # list positions are no suggestion
    keys = [key.replace("#", ID_SEP_KEY) for key in flags if not key.startswith("_meta_")]
    check_options(keys, ids | RUN_ARGUMENTS, what="config key", suggestions=named | RUN_ARGUMENTS)
    parser = ConfigParser(content)
    wrong = []
    for key, raw in flags.items():
        id_ = key.replace("#", ID_SEP_KEY)
        if id_ in RUN_ARGUMENTS or key.startswith("_meta_"):
            continue
        problem = _type_problem(parser[id_], raw)
        if problem:
            wrong.append(f"--{key} {raw!r}: {problem}")
    if wrong:
        raise ValueError("override(s) of the wrong type: " + "; ".join(wrong))


def _literal(raw: str) -> Any:
    """The value fire gives a command-line string: a Python literal where it parses as one, else the string."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _type_problem(default: Any, raw: str, default_name: str = "the config's value") -> str | None:
    """Why ``raw`` cannot replace a config value (or parameter default, ``default_name``) ``default`` of a plain type
    (bool, int, float, list), or None."""
    value = _literal(raw)
    if isinstance(value, str) and value.startswith(("$", "@", "%")):
        return None  # an expression or a reference: checked when it is evaluated
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "True or False"
        if isinstance(value, str) and value.lower() in ("true", "false"):
            expected += f" ({value!r} would be passed on as a string, and any non-empty string counts as true)"
    elif isinstance(default, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, list):
        ok, expected = isinstance(value, (list, tuple)), "a list, e.g. [64,64,48]"
    else:
        return None
    return None if ok else f"expected {expected} ({default_name} is {default!r})"
