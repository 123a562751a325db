"""Matplotlib figures for SVEBI results (headless-safe: no pyplot, no global state).

Every function builds a :class:`matplotlib.figure.Figure` directly (it renders with the Agg
backend whatever the session's backend), returns it, and also writes it to ``path`` when one
is given (format from the suffix, e.g. ``.png`` or ``.pdf``).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "ablation_plot",
    "curves_plot",
    "heatmap_grid",
    "interpretation_grid",
    "layer_distribution_plot",
    "overlay",
    "overlay_image",
]

PathLike = str | os.PathLike | None


def _save(fig: Figure, path: PathLike) -> Figure:
    if path is not None:
        fig.savefig(os.fspath(path), bbox_inches="tight", dpi=fig.dpi)
    return fig


def _as_rgb(image) -> np.ndarray:
    """``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]`` image → ``[H, W, 3]`` float in ``[0, 1]``."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image must be [H, W], [H, W, 1] or [H, W, 3], got shape {img.shape}")
    return np.clip(img, 0.0, 1.0)


def overlay_image(image, heatmap, *, alpha: float = 0.6, cmap: str = "jet") -> np.ndarray:
    """Blends a heatmap into an image, the authors' way.

    .. math::
        O = \\alpha\\,\\mathrm{cmap}(E) + (1 - \\alpha)\\,x \\qquad (\\alpha = 0.6)

    Args:
      image: ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]`` float image in ``[0, 1]``.
      heatmap: ``[H, W]`` float map in ``[0, 1]`` (values are clipped).
      alpha: weight of the colored heatmap, in ``[0, 1]``.
      cmap: matplotlib colormap name.

    Returns:
      ``[H, W, 3]`` float64 RGB in ``[0, 1]``.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    img = _as_rgb(image)
    hm = np.asarray(heatmap, dtype=np.float64)
    if hm.shape != img.shape[:2]:
        raise ValueError(f"heatmap must be [H, W] = {img.shape[:2]}, got shape {hm.shape}")
    colored = matplotlib.colormaps[cmap](np.clip(hm, 0.0, 1.0))[..., :3]
    return alpha * colored + (1.0 - alpha) * img


def overlay(
    image,
    heatmap,
    alpha: float = 0.6,
    *,
    cmap: str = "jet",
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    """Figure of :func:`overlay_image` (``alpha·cmap(heatmap) + (1 − alpha)·image``)."""
    fig = Figure(figsize=(3, 3))
    ax = fig.add_subplot()
    ax.imshow(overlay_image(image, heatmap, alpha=alpha, cmap=cmap))
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def heatmap_grid(
    images,
    heatmaps: Mapping[str, np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    alpha: float = 0.6,
    cmap: str = "jet",
    show_image: bool = True,
    normalize: bool = True,
    path: PathLike = None,
) -> Figure:
    """Grid of heatmap overlays: one row per image, one column per layer or method.

    Args:
      images: ``[B, H, W, C]`` float images in ``[0, 1]``.
      heatmaps: ``{name: [B, H, W]}`` maps in ``[0, 1]`` (columns in dict order).
      titles: optional ``B`` row labels (e.g. ``"pred 7"``).
      alpha: overlay weight of the heatmap.
      cmap: colormap name.
      show_image: prepend a column with the plain image.
      normalize: min–max normalize every map for display (raw gradients are not in
        ``[0, 1]``); constant maps show as zeros.
      path: optional output file.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C], got shape {images.shape}")
    b = images.shape[0]
    for name, hm in heatmaps.items():
        if np.shape(hm) != (b,) + images.shape[1:3]:
            raise ValueError(
                f"heatmaps[{name!r}] must be [B, H, W] = {(b,) + images.shape[1:3]}, "
                f"got shape {np.shape(hm)}"
            )
    if titles is not None and len(titles) != b:
        raise ValueError(f"titles must give one label per image ({b}), got {len(titles)}")
    names = list(heatmaps)
    ncol = len(names) + int(show_image)
    if ncol == 0:
        raise ValueError("heatmaps must hold at least one map (or show_image=True)")
    fig = Figure(figsize=(2.0 * ncol, 2.0 * b))
    axes = np.asarray(fig.subplots(b, ncol, squeeze=False))
    for r in range(b):
        col = 0
        if show_image:
            axes[r, 0].imshow(_as_rgb(images[r]))
            if r == 0:
                axes[r, 0].set_title("image")
            col = 1
        for name in names:
            ax = axes[r, col]
            hm = np.asarray(heatmaps[name], dtype=np.float64)[r]
            if normalize:
                span = np.ptp(hm)
                hm = (hm - hm.min()) / span if span > 0 else np.zeros_like(hm)
            ax.imshow(overlay_image(images[r], hm, alpha=alpha, cmap=cmap))
            if r == 0:
                ax.set_title(textwrap.fill(name, 16), fontsize=8)
            col += 1
        if titles is not None:
            axes[r, 0].set_ylabel(titles[r])
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    return _save(fig, path)


def layer_distribution_plot(
    counts: Mapping[str, int], *, title: str = "Relevant filters per layer", path: PathLike = None
) -> Figure:
    """Bar chart of relevant-filter counts per layer (the paper's Fig. 3c).

    Args:
      counts: ``{layer: count}`` (:func:`svebi_jax.relevance.layer_distribution`).
      title: axes title.
      path: optional output file.
    """
    fig = Figure(figsize=(max(3.0, 0.6 * len(counts) + 1.5), 3))
    ax = fig.add_subplot()
    names = list(counts)
    ax.bar(range(len(names)), [counts[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 6 else 0, ha="right")
    ax.set_ylabel("# relevant filters")
    ax.set_title(title)
    return _save(fig, path)


def interpretation_grid(
    crops: Mapping[object, Sequence[np.ndarray]],
    *,
    titles: Mapping[object, Sequence[str]] | None = None,
    cmap: str = "gray",
    path: PathLike = None,
) -> Figure:
    """Grid of top-k average crops: one row per class, one column per filter.

    Args:
      crops: ``{row_label (e.g. class): [crop [rf, rf, C], ...]}``; rows may differ in length
        and crop size (e.g. filters of several layers). A mapping ``{key: crop}`` per row (e.g.
        ``{channel: crop}`` from :func:`svebi_jax.interpret.interpret_filters`) also works,
        its keys becoming column titles.
      titles: optional ``{row_label: [column titles]}``.
      cmap: colormap for single-channel crops.
      path: optional output file.
    """
    rows = {}
    row_titles = {}
    for key, row in crops.items():
        if isinstance(row, Mapping):
            row_titles[key] = [str(c) for c in row]
            row = list(row.values())
        rows[key] = [np.asarray(c, dtype=np.float64) for c in row]
    if titles is not None:
        row_titles.update({k: list(v) for k, v in titles.items()})
    nrow = max(1, len(rows))
    ncol = max([1] + [len(r) for r in rows.values()])
    fig = Figure(figsize=(1.5 * ncol + 0.5, 1.5 * nrow))
    axes = np.asarray(fig.subplots(nrow, ncol, squeeze=False))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for r, (key, row) in enumerate(rows.items()):
        axes[r, 0].set_ylabel(str(key))
        for cidx, crop in enumerate(row):
            ax = axes[r, cidx]
            lo, hi = crop.min(), crop.max()
            shown = (crop - lo) / (hi - lo) if hi > lo else np.zeros_like(crop)
            if shown.ndim == 3 and shown.shape[-1] == 1:
                shown = shown[..., 0]
            ax.imshow(shown, cmap=cmap if shown.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_frame_on(True)
            names = row_titles.get(key)
            if names is not None and cidx < len(names):
                ax.set_title(names[cidx], fontsize=8)
    return _save(fig, path)


def curves_plot(
    curves: Mapping[str, np.ndarray],
    title: str = "",
    *,
    xlabel: str = "fraction of pixels",
    ylabel: str = "score",
    path: PathLike = None,
) -> Figure:
    """Line plot of curves over a unit x-range (e.g. insertion/deletion curves per method).

    Args:
      curves: ``{method: [n]}`` curves, or ``[B, n]`` (plotted as the mean over ``B`` with a
        ±1 std band).
      title: axes title.
      xlabel, ylabel: axis labels.
      path: optional output file.
    """
    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        y = np.asarray(curve, dtype=np.float64)
        if y.ndim == 2:
            mean, std = y.mean(axis=0), y.std(axis=0)
        elif y.ndim == 1:
            mean, std = y, None
        else:
            raise ValueError(f"curves[{name!r}] must be [n] or [B, n], got shape {y.shape}")
        x = np.linspace(0.0, 1.0, mean.shape[0])
        (line,) = ax.plot(x, mean, label=str(name))
        if std is not None:
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if curves:
        ax.legend(fontsize=8)
    return _save(fig, path)


def ablation_plot(
    mus,
    full,
    relevant,
    random,
    *,
    title: str = "Ablation",
    ylabel: str = "accuracy",
    path: PathLike = None,
) -> Figure:
    """Accuracy against μ: full network, only relevant filters kept, random filters kept.

    Args:
      mus: ``[n]`` positive μ values (log x axis).
      full: scalar or ``[n]`` accuracy of the unablated network.
      relevant: ``[n]`` accuracy with only the relevant filters.
      random: ``[n]`` or ``[n, R]`` accuracy with as many random filters (``R`` draws are shown
        as mean ± std).
      title, ylabel: labels.
      path: optional output file.
    """
    mus = np.asarray(mus, dtype=np.float64)
    if mus.ndim != 1:
        raise ValueError(f"mus must be [n], got shape {mus.shape}")
    n = mus.shape[0]
    full = np.broadcast_to(np.asarray(full, dtype=np.float64), (n,))
    relevant = np.asarray(relevant, dtype=np.float64)
    random = np.asarray(random, dtype=np.float64)
    if relevant.shape != (n,):
        raise ValueError(f"relevant must be [n] = [{n}], got shape {relevant.shape}")
    if random.shape[:1] != (n,) or random.ndim > 2:
        raise ValueError(f"random must be [n] or [n, R] with n = {n}, got shape {random.shape}")
    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.plot(mus, full, "k--", label="full")
    ax.plot(mus, relevant, "o-", label="relevant")
    if random.ndim == 2:
        mean, std = random.mean(axis=1), random.std(axis=1)
        (line,) = ax.plot(mus, mean, "s-", label="random")
        ax.fill_between(mus, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    else:
        ax.plot(mus, random, "s-", label="random")
    if np.all(mus > 0):
        ax.set_xscale("log")
    ax.set_xlabel("μ")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)
