"""Trivial saliency baselines: maps that ignore the model.

A useful explanation method should beat these on the insertion/deletion metrics and fail the
model-randomization sanity check less than they "pass" it (their maps do not change at all
when the model does). All return ``[B, H, W]`` float32 maps for ``[B, H, W, C]`` images.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from svebi_jax.methods.grad import _check_images

__all__ = ["centered_gaussian_maps", "input_intensity_maps", "random_maps"]

Array = jax.Array


def random_maps(key: Array, images: Array) -> Array:
    """Uniform noise in [0, 1), one independent map per image.

    Args:
      key: a :func:`jax.random.key` / ``PRNGKey``.
      images: ``[B, H, W, C]`` float images (only the shape is used).

    Returns:
      ``[B, H, W]`` float32 ``jax.random.uniform(key, (B, H, W))``.
    """
    images = _check_images(images)
    return jax.random.uniform(key, images.shape[:3], jnp.float32)


def input_intensity_maps(images: Array) -> Array:
    """The image itself: the channel mean of each pixel.

    Args:
      images: ``[B, H, W, C]`` float images.

    Returns:
      ``[B, H, W]`` float map :math:`\\frac{1}{C}\\sum_c x_{h,w,c}`.
    """
    images = _check_images(images)
    return images.mean(axis=-1)


def centered_gaussian_maps(images: Array, sigma_fraction: float = 0.25) -> Array:
    """A Gaussian bump at the image centre (the "centre bias" baseline).

    .. math::
        M_{h,w} = \\exp\\left(-\\frac{(h - c_h)^2}{2\\sigma_h^2}
          - \\frac{(w - c_w)^2}{2\\sigma_w^2}\\right),\\quad
        c_h = \\frac{H - 1}{2},\\ \\sigma_h = f H,\\ c_w = \\frac{W - 1}{2},\\ \\sigma_w = f W

    with pixel centres at :math:`0, \\dots, H-1` and :math:`f` = ``sigma_fraction``. The value
    is 1 at the exact centre (reached only for odd sizes).

    Args:
      images: ``[B, H, W, C]`` float images (only the shape is used).
      sigma_fraction: :math:`f > 0`, the standard deviation as a fraction of the side.

    Returns:
      ``[B, H, W]`` float32 map, the same for every image.

    Raises:
      ValueError: on bad ``images`` or ``sigma_fraction`` ≤ 0.
    """
    images = _check_images(images)
    if (
        isinstance(sigma_fraction, bool)
        or not isinstance(sigma_fraction, int | float)
        or not math.isfinite(sigma_fraction)
        or sigma_fraction <= 0
    ):
        raise ValueError(f"sigma_fraction must be a finite number > 0, got {sigma_fraction!r}")
    b, h, w, _ = images.shape
    ys = (jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2) / (sigma_fraction * h)
    xs = (jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2) / (sigma_fraction * w)
    bump = jnp.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    return jnp.broadcast_to(bump, (b, h, w))
