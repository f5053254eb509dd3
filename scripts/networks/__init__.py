"""Networks of the bundle: the segmentation network (``network_def``) and the training-only DualSSL heads."""

from .dual_ssl_heads import DualSSLHeads
from .residual_unet import ResidualUNet

__all__ = ["DualSSLHeads", "ResidualUNet"]
