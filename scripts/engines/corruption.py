"""High-uncertainty regions and their random appearance corruption for the local restoration task."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.utils import ensure_tuple_rep

from scripts.engines.random_state import LazyDeviceGenerator
from scripts.transforms.entropy import predictive_entropy

__all__ = ["RandUncertaintyCorruption", "uncertainty_region"]


def uncertainty_region(band: torch.Tensor, probabilities: torch.Tensor, top_percent: float) -> torch.Tensor:
    """
    High-uncertainty region: the label's boundary band united with the most uncertain voxels of the prediction.

    Args:
        band: boundary band, shape ``(B, 1, *spatial)``, > 0 inside.
        probabilities: softmax probabilities, shape ``(B, C, *spatial)``.
        top_percent: percentage (0 to 100) of the voxels of each batch item with the highest predictive
            entropy that join the region; exactly ``ceil(top_percent / 100 * num_voxels)`` voxels per item
            (ties broken arbitrarily). 0 gives the band only.

    Returns:
        boolean region, shape ``(B, 1, *spatial)``.
    """
    if not 0.0 <= top_percent <= 100.0:
        raise ValueError(f"top_percent must be in [0, 100], got {top_percent}.")
    region = band > 0
    num_voxels = region[0].numel()
    num_top = math.ceil(top_percent / 100.0 * num_voxels)
    if num_top == 0:
        return region
    entropy = predictive_entropy(probabilities).flatten(1)  # (B, V)
    top = torch.zeros_like(entropy, dtype=torch.bool)
    top.scatter_(1, entropy.topk(num_top, dim=1).indices, True)
    return region | top.view_as(region)


class RandUncertaintyCorruption:
    """
    Randomly corrupt the appearance (not the geometry) of sub-blocks of the high-uncertainty region.

    For each batch item (corrupted at all with probability ``prob``), ``num_blocks`` block centres are drawn
    uniformly among the region voxels, and a cube of ``block_size`` voxels around each centre becomes a
    block with one corruption type drawn with ``corruption_weights``:

    0. local shuffle: every voxel takes the value of a random neighbour within ``shuffle_radius`` voxels
       along each axis (clamped to the volume);
    1. non-linear remap: a random monotonic gamma curve ``x ** gamma`` per block, applied to the item's
       min-max normalised intensities and mapped back to the item's range (``log gamma`` uniform in
       ``±[log 1.5, log 4]``);
    2. noise in-painting: uniform noise in the item's intensity range;
    3. constant in-painting: one uniform random constant in the item's intensity range per block.

    Where blocks overlap, the block drawn last wins. Only voxels inside both a block and the region are
    changed: the returned mask is the union of the blocks intersected with the region, and the image is
    identical outside it.

    Randomness comes from a ``torch.Generator`` on the input's device, so the operation runs on the device
    without host synchronisation and is reproducible: the generator is seeded with ``seed``
    (constructor or :meth:`set_random_state`); with ``seed=None`` the seed is drawn from torch's global
    generator at the first call, so ``torch.manual_seed`` / ``monai.utils.set_determinism`` make it
    reproducible. When the input moves to another device, a new generator is created there, seeded from the
    previous one. The same seed and inputs give identical outputs on the same device; ``state_dict`` and
    ``load_state_dict`` carry the generator through a training checkpoint.

    Args:
        block_size: edge length of a block in voxels, an int or one per spatial dimension.
        num_blocks: number of blocks per batch item (fewer when the region has fewer voxels).
        prob: probability that a batch item is corrupted at all.
        shuffle_radius: maximum neighbour offset of the local shuffle, in voxels.
        corruption_weights: relative frequencies of (local shuffle, non-linear remap, noise in-painting,
            constant in-painting).
        seed: seed of the generator.
    """

    num_types = 4
    min_log_gamma = math.log(1.5)
    max_log_gamma = math.log(4.0)

    def __init__(
        self,
        block_size: int | Sequence[int] = 8,
        num_blocks: int = 8,
        prob: float = 1.0,
        shuffle_radius: int = 2,
        corruption_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        seed: int | None = None,
    ) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be positive, got {num_blocks}.")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}.")
        if shuffle_radius < 0:
            raise ValueError(f"shuffle_radius must be non-negative, got {shuffle_radius}.")
        weights = torch.as_tensor(corruption_weights, dtype=torch.float64)
        if weights.shape != (self.num_types,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(
                f"expected {self.num_types} non-negative weights with a positive sum, got {corruption_weights}."
            )
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.prob = prob
        self.shuffle_radius = shuffle_radius
        self.corruption_weights = (weights / weights.sum()).float()
        self.set_random_state(seed)

    def set_random_state(self, seed: int | None = None) -> RandUncertaintyCorruption:
        """Seed the generator (created on the input's device at the next call); ``None``: see the class docs."""
        self.generator = LazyDeviceGenerator(seed)
        return self

    def state_dict(self) -> dict:
        """The generator's state, for checkpoints (see ``scripts.engines.random_state.LazyDeviceGenerator``)."""
        return self.generator.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image: intensities, shape ``(B, 1, *spatial)`` (2 or 3 spatial dimensions), floating point.
            region: high-uncertainty region, shape ``(B, 1, *spatial)``, boolean (or > 0 inside).

        Returns:
            the corrupted image (same shape and dtype as ``image``) and the boolean mask of the corrupted
            voxels, shape ``(B, 1, *spatial)``.
        """
        if image.ndim not in (4, 5) or image.shape[1] != 1:
            raise ValueError(f"image must have shape (B, 1, *spatial), 2 or 3 spatial dims, got {tuple(image.shape)}.")
        if region.shape != image.shape:
            raise ValueError(f"region shape {tuple(region.shape)} must match image shape {tuple(image.shape)}.")
        device = image.device
        generator = self.generator.get(device)
        batch = image.shape[0]
        spatial = image.shape[2:]
        region = region > 0
        num_blocks = min(self.num_blocks, region[0].numel())

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=device)

        # all random draws happen unconditionally, in a fixed order, for reproducibility
        corrupt_item = rand(batch) < self.prob  # (B,)
        scores = rand(batch, region[0].numel()).masked_fill(~region.flatten(1), -1.0)
        centre_scores, centres = scores.topk(num_blocks, dim=1)  # (B, K)
        block_types = torch.multinomial(
            self.corruption_weights.to(device), batch * num_blocks, replacement=True, generator=generator
        ).view(batch, num_blocks)
        log_gamma = self.min_log_gamma + (self.max_log_gamma - self.min_log_gamma) * rand(batch, num_blocks)
        gamma = torch.where(rand(batch, num_blocks) < 0.5, log_gamma, -log_gamma).exp()  # (B, K)
        constants = rand(batch, num_blocks)  # (B, K), in units of the item's intensity range
        radius = self.shuffle_radius
        offsets = torch.randint(-radius, radius + 1, (len(spatial), *image.shape), generator=generator, device=device)
        noise = rand(*image.shape)

        # block map: id (1..K) of the covering block with the highest id, 0 outside all blocks
        block_ids = torch.arange(1, num_blocks + 1, device=device, dtype=torch.float32).expand(batch, -1)
        block_ids = block_ids * ((centre_scores >= 0) & corrupt_item[:, None])
        block_map = torch.zeros(batch, region[0].numel(), device=device, dtype=torch.float32)
        block_map = block_map.scatter(1, centres, block_ids).view(image.shape)
        block_map = _dilate(block_map, ensure_tuple_rep(self.block_size, len(spatial)))
        mask = (block_map > 0) & region
        block_index = (block_map.long() - 1).clamp_min(0).flatten(1)  # (B, V), index of each voxel's block

        def per_voxel(per_block: torch.Tensor) -> torch.Tensor:
            return per_block.gather(1, block_index).view_as(image)

        lo = image.flatten(1).amin(dim=1).view(-1, *([1] * (image.ndim - 1)))
        span = image.flatten(1).amax(dim=1).view_as(lo) - lo
        normalised = (image - lo) / span.clamp_min(torch.finfo(image.dtype).tiny)
        candidates = (
            _shuffle(image, offsets),
            lo + span * normalised.clamp(0.0, 1.0).pow(per_voxel(gamma)),
            lo + span * noise,
            lo + span * per_voxel(constants),
        )
        voxel_types = per_voxel(block_types)
        corrupted = image
        for corruption_type, candidate in enumerate(candidates):
            corrupted = torch.where(mask & (voxel_types == corruption_type), candidate.to(image.dtype), corrupted)
        return corrupted, mask


def _dilate(block_map: torch.Tensor, block_size: Sequence[int]) -> torch.Tensor:
    """
    Max-pool ``(B, 1, *spatial)`` with a ``block_size`` box window and stride 1, keeping the spatial shape.
    The box is separable, so it is pooled one axis at a time.
    """
    max_pool = F.max_pool3d if len(block_size) == 3 else F.max_pool2d
    for dim, size in enumerate(block_size):
        kernel = [1] * len(block_size)
        kernel[dim] = size
        padding = [0] * (2 * len(block_size))  # F.pad lists the last dimension first
        padding[2 * (len(block_size) - 1 - dim)] = size // 2
        padding[2 * (len(block_size) - 1 - dim) + 1] = size - 1 - size // 2
        block_map = max_pool(F.pad(block_map, padding), kernel_size=kernel, stride=1)
    return block_map


def _shuffle(image: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """
    Every voxel of ``image`` ``(B, 1, *spatial)`` takes the value of the voxel at its position plus
    ``offsets`` ``(len(spatial), B, 1, *spatial)``, clamped to the volume.
    """
    spatial = image.shape[2:]
    flat_index = torch.zeros_like(offsets[0])
    for dim, size in enumerate(spatial):
        shape = [1] * image.ndim
        shape[2 + dim] = size
        coordinate = torch.arange(size, device=image.device).view(shape) + offsets[dim]
        flat_index = flat_index * size + coordinate.clamp(0, size - 1)
    return image.flatten(1).gather(1, flat_index.flatten(1)).view_as(image)
