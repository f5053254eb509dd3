"""``python -m scripts.evaluation --test_sets FILE --checkpoint WEIGHTS --output_dir DIR``: the cross-source report."""

import sys

import fire

from scripts.bundle import check_flags
from scripts.evaluation.cross_source import CrossSourceError, main

if __name__ == "__main__":
    try:
        check_flags(sys.argv[1:], main)  # a misspelt flag is refused before anything is evaluated or written
        fire.Fire(main, name="python -m scripts.evaluation")
    except (CrossSourceError, ValueError, OSError) as error:
        sys.exit(f"error: {error}")
