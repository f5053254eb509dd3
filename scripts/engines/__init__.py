"""Ignite engines of the bundle and what their iterations need: voxel sampling, corruption, generators."""

from .appearance import RandGlobalIntensityNetwork
from .corruption import RandUncertaintyCorruption, uncertainty_region
from .dual_ssl_trainer import DualSSLTrainer, loss_terms
from .random_state import LazyDeviceGenerator, global_rng_state, set_global_rng_state
from .sampling import VoxelSamples, gather_voxels, sample_structure_voxels
from .single_case import run_single_case

__all__ = [
    "DualSSLTrainer",
    "LazyDeviceGenerator",
    "RandGlobalIntensityNetwork",
    "RandUncertaintyCorruption",
    "VoxelSamples",
    "gather_voxels",
    "global_rng_state",
    "loss_terms",
    "run_single_case",
    "sample_structure_voxels",
    "set_global_rng_state",
    "uncertainty_region",
]
