"""Networks of the bundle: the segmentation network (``network_def``) the training-only DualSSL and consistency-pretraining heads, PolyCL's projection head, the slice-wise wrapper of a 2D network, SAM 2's predictors, the ONNX Runtime backend of inference."""

from .averaged_pair import SoftmaxAveragedPair
from .consistency_heads import ConsistencyHeads
from .dual_ssl_heads import DualSSLHeads
from .onnx_backend import BACKENDS, OnnxRuntimeNetwork, inference_backend
from .projection_head import ProjectionHead
from .residual_unet import ResidualUNet
from .sam2_models import SAM2_MODEL_CONFIGS, Sam2BoxPredictor, build_sam2_video_predictor, write_frames
from .slice_wise import SliceWiseNetwork

__all__ = ["BACKENDS", "SAM2_MODEL_CONFIGS", "Sam2BoxPredictor", "ConsistencyHeads", "DualSSLHeads", "OnnxRuntimeNetwork", "ProjectionHead", "ResidualUNet", "SliceWiseNetwork", "SoftmaxAveragedPair", "build_sam2_video_predictor", "inference_backend", "write_frames"]
