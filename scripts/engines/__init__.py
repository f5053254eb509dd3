"""Ignite engines of the bundle and what their iterations need: voxel sampling, corruption, generators."""

from .appearance import RandGlobalIntensityNetwork
from .consistency_pretrainer import ConsistencyPretrainer, frozen_copy, pretraining_terms
from .corruption import RandUncertaintyCorruption, uncertainty_region
from .dual_ssl_trainer import DualSSLTrainer, loss_terms
from .features import capture_features, capture_inputs, capture_stages
from .polycl_pretrainer import PolyCLPretrainer, polycl_terms
from .random_state import LazyDeviceGenerator, global_rng_state, set_global_rng_state
from .sampling import VoxelSamples, gather_voxels, sample_structure_voxels
from .semi_supervised_trainer import TwoNetworkSemiSupervisedTrainer, TwoStreamLoader, semi_supervised_terms
from .single_case import run_single_case
from .view_alignment import align_views, feature_map_affine

__all__ = [
    "ConsistencyPretrainer",
    "DualSSLTrainer",
    "LazyDeviceGenerator",
    "PolyCLPretrainer",
    "RandGlobalIntensityNetwork",
    "RandUncertaintyCorruption",
    "TwoNetworkSemiSupervisedTrainer",
    "TwoStreamLoader",
    "VoxelSamples",
    "align_views",
    "capture_features",
    "capture_inputs",
    "capture_stages",
    "feature_map_affine",
    "frozen_copy",
    "gather_voxels",
    "global_rng_state",
    "loss_terms",
    "polycl_terms",
    "pretraining_terms",
    "run_single_case",
    "sample_structure_voxels",
    "semi_supervised_terms",
    "set_global_rng_state",
    "uncertainty_region",
]
