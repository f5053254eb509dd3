"""Global intensity non-linear augmentation (GIN): a random shallow convolutional network per image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from scripts.engines.random_state import LazyDeviceGenerator

__all__ = ["RandGlobalIntensityNetwork"]


class RandGlobalIntensityNetwork:
    """
    Random appearance of a batch of images from a freshly drawn shallow convolutional network per image, after
    the GIN augmentation of Ouyang et al., "Causality-inspired single-source domain generalization for medical
    image segmentation" (IEEE TMI 2022).

    For each batch item a network of ``num_layers`` convolutions (each layer's kernel size drawn from
    ``kernel_sizes``, ``hidden_channels`` channels between them, weights and biases drawn from N(0, 1), leaky ReLU
    between layers) maps the image
    ``x`` to ``g(x)``; the output mixes it with the input, ``a * g(x) + (1 - a) * x`` with ``a ~ U(0, 1)``
    per item, rescaled to the Frobenius norm of ``x`` so that the overall intensity level is kept. Shapes,
    organ boundaries and the label are unchanged: only the intensity-to-tissue mapping and texture change.

    Randomness comes from a ``torch.Generator`` on the input's device (``scripts.engines.LazyDeviceGenerator``):
    the same ``seed`` and inputs give identical outputs; ``state_dict`` carries it through a checkpoint.

    Args:
        num_layers: convolutions of the random network (>= 1).
        hidden_channels: channels between the convolutions (>= 1).
        kernel_sizes: odd kernel sizes a layer draws its kernel from (1: a voxel-wise intensity mapping; 3 adds
            texture, and blurs fine structures on coarse grids).
        negative_slope: slope of the leaky ReLU between the layers.
        seed: seed of the generator (``None``: drawn from torch's global RNG at the first call).

    Raises:
        ValueError: a non-positive layer or channel count, no kernel size, or an even or non-positive one.
    """

    def __init__(
        self,
        num_layers: int = 4,
        hidden_channels: int = 2,
        kernel_sizes: Sequence[int] = (1, 3),
        negative_slope: float = 0.01,
        seed: int | None = None,
    ) -> None:
        if num_layers < 1 or hidden_channels < 1:
            raise ValueError(f"num_layers and hidden_channels must be >= 1, got {num_layers} and {hidden_channels}.")
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be positive odd numbers, got {kernel_sizes}.")
        self.num_layers = num_layers
        self.hidden_channels = hidden_channels
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.negative_slope = negative_slope
        self.generator = LazyDeviceGenerator(seed)

    def state_dict(self) -> dict:
        return self.generator.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """
        Args:
            image: intensities, shape ``(B, C, *spatial)`` with 2 or 3 spatial dimensions, floating point.

        Returns:
            the augmented batch, same shape and dtype.

        Raises:
            ValueError: when ``image`` is not (B, C, H, W) or (B, C, D, H, W).
        """
        if image.ndim not in (4, 5):
            raise ValueError(f"expected (B, C, *spatial) with 2 or 3 spatial dims, got shape {tuple(image.shape)}.")
        generator = self.generator.get(image.device)
        batch, channels = image.shape[:2]
        spatial_dims = image.ndim - 2
        conv = F.conv3d if spatial_dims == 3 else F.conv2d
        choices = torch.randint(len(self.kernel_sizes), (self.num_layers,), generator=generator, device=image.device)
        sizes = [self.kernel_sizes[i] for i in choices.tolist()]
        # the batch items become groups of one grouped convolution: one random network per item, one call per layer
        x = image.float().reshape(1, batch * channels, *image.shape[2:])
        widths = [channels] + [self.hidden_channels] * (self.num_layers - 1) + [channels]
        for layer, (c_in, c_out, size) in enumerate(zip(widths[:-1], widths[1:], sizes)):
            weight = torch.randn((batch * c_out, c_in) + (size,) * spatial_dims, generator=generator, device=image.device)
            bias = torch.randn((batch * c_out,), generator=generator, device=image.device)
            x = conv(x, weight, bias, padding=size // 2, groups=batch)
            if layer < self.num_layers - 1:
                x = F.leaky_relu(x, self.negative_slope)
        x = x.reshape(image.shape).float()
        alpha = torch.rand((batch,) + (1,) * (image.ndim - 1), generator=generator, device=image.device)
        mixed = alpha * x + (1 - alpha) * image.float()
        dims = tuple(range(1, image.ndim))
        norm = torch.linalg.vector_norm
        scale = norm(image.float(), dim=dims, keepdim=True) / norm(mixed, dim=dims, keepdim=True).clamp_min(1e-6)
        return (mixed * scale).to(image.dtype)
