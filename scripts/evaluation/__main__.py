"""``python -m scripts.evaluation --test_sets FILE --checkpoint WEIGHTS --output_dir DIR``: the cross-source report."""

import sys

from scripts.bundle import run_command_line
from scripts.evaluation.cross_source import CrossSourceError, main

if __name__ == "__main__":
    try:
        # a misspelt flag is refused before anything is evaluated or written
        run_command_line(main, name="python -m scripts.evaluation")
    except (CrossSourceError, ValueError, OSError) as error:
        sys.exit(f"error: {error}")
