"""``python -m scripts.evaluation --test_sets FILE --checkpoint WEIGHTS --output_dir DIR``: the cross-source report."""

import fire

from scripts.evaluation.cross_source import main

if __name__ == "__main__":
    fire.Fire(main)
