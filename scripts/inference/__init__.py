"""Batch inference of ``configs/inference.yaml``: the per-case runner, its run summary and overlays."""
