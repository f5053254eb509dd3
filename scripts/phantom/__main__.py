"""Command line: ``python -m scripts.phantom --out data/phantom --domain source --cases 16 --seed 0``.

``--domain all`` writes every registered domain into ``<out>/<domain>``; ``--overwrite`` replaces an
existing dataset; ``--organ_labels`` writes multi-organ label maps instead of pancreas-only labels;
``--anatomy whole_abdomen`` draws lung bases to pelvis (default ``upper_abdomen``); ``--organ_maps`` writes
multi-organ maps to ``organsTr/`` next to the pancreas labels.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scripts.bundle import run_command_line

from .anatomies import DEFAULT_ANATOMY
from .dataset import write_dataset
from .domains import DOMAINS, get_domain


def main(
    out: str,
    domain: str = "source",
    cases: int = 16,
    seed: int = 0,
    organ_labels: bool = False,
    overwrite: bool = False,
    anatomy: str = DEFAULT_ANATOMY,
    organ_maps: bool = False,
) -> None:
    """Write phantom dataset(s) in Medical Segmentation Decathlon layout."""
    names = list(DOMAINS) if domain == "all" else [get_domain(str(domain)).name]
    for name in names:
        target = Path(out) / name if domain == "all" else Path(out)
        write_dataset(
            target, name, cases=cases, seed=seed, organ_labels=organ_labels, overwrite=overwrite,
            anatomy=str(anatomy), organ_maps=organ_maps,
        )
        print(f"wrote {cases} {name} cases to {target}")


if __name__ == "__main__":
    try:
        run_command_line(main)
    except (ValueError, FileExistsError) as err:
        sys.exit(f"error: {err}")
