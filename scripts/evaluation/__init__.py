"""Evaluation of a trained model on labelled test sets: metrics, test-set files, evaluator and report.

    from scripts.evaluation import CaseEvaluator, read_test_sets, write_report

``python -m scripts.evaluation --test_sets FILE ...`` writes the cross-source report (``cross_source.main``).
"""

from .evaluator import BundleEvaluator, CaseError, CaseEvaluator, DomainEvaluator
from .labelled_sets import LabelledSet, read_test_sets
from .report import REPORT_FILES, MetricColumn, summarize, write_report

__all__ = [
    "REPORT_FILES",
    "BundleEvaluator",
    "CaseError",
    "CaseEvaluator",
    "DomainEvaluator",
    "LabelledSet",
    "MetricColumn",
    "read_test_sets",
    "summarize",
    "write_report",
]
