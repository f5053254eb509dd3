"""Ignite engines of the bundle."""

from .dual_ssl_trainer import DualSSLTrainer, loss_terms

__all__ = ["DualSSLTrainer", "loss_terms"]
