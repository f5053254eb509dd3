"""
The bundle's own files: where the bundle and its configs are, one way to parse them, and the check that
refuses a misspelt option or config key before any work starts.
"""

from .configs import BUNDLE_ROOT, CONFIG_DIR, bundle_parser, config_files
from .options import check_bool_values, check_flags, check_options, refuse_unknown_overrides, run_command_line

__all__ = [
    "BUNDLE_ROOT",
    "CONFIG_DIR",
    "bundle_parser",
    "check_bool_values",
    "check_flags",
    "check_options",
    "config_files",
    "refuse_unknown_overrides",
    "run_command_line",
]
