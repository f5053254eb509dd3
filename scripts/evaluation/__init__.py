"""Evaluation of a trained model on labelled test sets: metrics, test-set files, evaluator and report.

    from scripts.evaluation import CaseEvaluator, RelativeVolumeErrorMetric, read_test_sets, write_report
"""

from .evaluator import BUNDLE_ROOT, BundleEvaluator, CaseError, CaseEvaluator, DomainEvaluator
from .labelled_sets import LabelledSet, read_test_sets
from .metrics_saver import AtomicMetricsSaver
from .report import REPORT_FILES, MetricColumn, summarize, write_report
from .volume_metric import RelativeVolumeErrorMetric

__all__ = [
    "AtomicMetricsSaver",
    "BUNDLE_ROOT",
    "REPORT_FILES",
    "BundleEvaluator",
    "CaseError",
    "CaseEvaluator",
    "DomainEvaluator",
    "LabelledSet",
    "MetricColumn",
    "RelativeVolumeErrorMetric",
    "read_test_sets",
    "summarize",
    "write_report",
]
