"""Command line: ``python -m scripts.prepare {msd,nih,folder} --help``."""

import logging
import sys

from scripts.bundle import run_command_line
from scripts.prepare import folder, msd, nih


def main() -> None:
    """Run a command; a bad input or an existing output ends it with the message and exit status 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        run_command_line({"msd": msd, "nih": nih, "folder": folder}, name="python -m scripts.prepare")
    except (ValueError, OSError, RuntimeError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
