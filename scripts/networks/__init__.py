"""Networks of the bundle: the segmentation network (``network_def``) the training-only DualSSL and consistency-pretraining heads, the ONNX Runtime backend of inference."""

from .averaged_pair import SoftmaxAveragedPair
from .consistency_heads import ConsistencyHeads
from .dual_ssl_heads import DualSSLHeads
from .onnx_backend import BACKENDS, OnnxRuntimeNetwork, inference_backend
from .residual_unet import ResidualUNet

__all__ = ["BACKENDS", "ConsistencyHeads", "DualSSLHeads", "OnnxRuntimeNetwork", "ResidualUNet", "SoftmaxAveragedPair", "inference_backend"]
