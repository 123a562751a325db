"""Matplotlib figures for SVEBI results (headless-safe: no pyplot, no global state).

Every function builds a :class:`matplotlib.figure.Figure` directly (it renders with the Agg
backend whatever the session's backend), returns it, and also writes it to ``path`` when one
is given (format from the suffix, e.g. ``.png`` or ``.pdf``).

**How maps are shown** (Captum's ``visualize_image_attr`` convention). Every map display has
a ``sign``:

- ``"all"``: a signed map, on a diverging colormap (``RdBu_r``) centred on zero: white is 0,
  red positive, blue negative, each map scaled by its largest :math:`|\\text{value}|`, so zero
  stays white whatever the map's range;
- ``"positive"``: the positive part, on a sequential colormap (``inferno``) from black (0) to
  the map's maximum;
- ``"absolute_value"``: :math:`|\\text{map}|` on the sequential colormap;
- ``"negative"``: the magnitude of the negative part on the sequential colormap;
- ``"auto"`` (default): ``"all"`` when the map has any value below zero, else ``"positive"``.

A map is never min–max stretched (that would move its zero to another colour). Every map
figure has a colour bar whose label names the rule.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure

__all__ = [
    "DIVERGING_CMAP",
    "SEQUENTIAL_CMAP",
    "IMAGE_DISPLAYS",
    "SIGNS",
    "MapDisplay",
    "ablation_plot",
    "curve_styles",
    "curves_plot",
    "display_rule",
    "heatmap_grid",
    "interpretation_grid",
    "layer_distribution_plot",
    "map_display",
    "overlay",
    "overlay_image",
    "resolve_sign",
]

PathLike = str | os.PathLike | None

#: Colormap of unsigned displays (perceptually uniform; black is zero).
SEQUENTIAL_CMAP = "inferno"
#: Colormap of signed displays (``sign="all"``): diverging, white at zero.
DIVERGING_CMAP = "RdBu_r"
#: The accepted ``sign`` values (Captum's, plus ``"auto"``).
SIGNS = ("auto", "all", "positive", "absolute_value", "negative")


def _figure(**kwargs) -> Figure:
    """A figure on its own Agg canvas (so ``fig.canvas.buffer_rgba()`` works after a draw)."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


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


# ----------------------------------------------------------------------------- display rules


class MapDisplay(NamedTuple):
    """How one map (or a stack of maps) is shown.

    Attributes:
      values: the displayed values, same shape as the input (``[H, W]`` or ``[B, H, W]``):
        the part of the map ``sign`` selects, divided by each map's largest magnitude when
        normalized (so in ``[-1, 1]`` for ``"all"``, ``[0, 1]`` otherwise).
      sign: the resolved sign (``"all"``, ``"positive"``, ``"absolute_value"``,
        ``"negative"``).
      cmap: the colormap.
      norm: the value → colour normalization (``[-1, 1]`` or ``[0, 1]``; 0 maps to the
        colormap's centre for ``"all"`` and to its start otherwise).
      rule: one sentence naming the display rule (used as colour bar label).
    """

    values: np.ndarray
    sign: str
    cmap: Colormap
    norm: Normalize
    rule: str


def resolve_sign(maps, sign: str = "auto") -> str:
    """The display sign of ``maps``: ``sign`` itself, or for ``"auto"`` ``"all"`` when any
    value is below zero (a signed map) and ``"positive"`` otherwise.

    Args:
      maps: ``[H, W]`` or ``[B, H, W]`` maps (one decision for the whole stack, so a column
        of a grid is shown one way).
      sign: one of :data:`SIGNS`.
    """
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {SIGNS}, got {sign!r}")
    if sign != "auto":
        return sign
    return "all" if np.any(np.asarray(maps) < 0) else "positive"


def display_rule(sign: str, *, cmap: str | None = None, normalize: bool = True) -> str:
    """One sentence saying what the colours of a ``sign`` display mean (a colour bar label)."""
    if sign not in SIGNS[1:]:
        raise ValueError(f"sign must be one of {SIGNS[1:]} (resolved), got {sign!r}")
    scale = " ÷ each map's max |value|" if normalize else ""
    if sign == "all":
        name = cmap or DIVERGING_CMAP
        colours = "white = 0, red > 0, blue < 0" if name == "RdBu_r" else "centre colour = 0"
        return f"signed map{scale}; {name}: {colours}"
    name = cmap or SEQUENTIAL_CMAP
    part = {
        "positive": "positive part of map",
        "absolute_value": "|map|",
        "negative": "|negative part| of map",
    }[sign]
    colours = "black = 0, yellow = 1" if name == "inferno" else "first colour = 0"
    return f"{part}{scale}; {name}: {colours}"


def map_display(
    maps,
    sign: str = "auto",
    *,
    cmap: str | None = None,
    diverging_cmap: str = DIVERGING_CMAP,
    normalize: bool = True,
) -> MapDisplay:
    """The :class:`MapDisplay` of ``maps`` under the display rule ``sign``.

    .. math::
        v = \\frac{s(E)}{\\max |s(E)|},\\qquad s(E) = E,\\ \\max(E, 0),\\ |E|,\\
        \\max(-E, 0)\\ \\text{for}\\ \\texttt{all, positive, absolute\\_value, negative}

    (per map; an all-zero map stays zero). ``"all"`` is shown on ``diverging_cmap`` over
    ``[-1, 1]`` (zero at its centre), the others on ``cmap`` over ``[0, 1]`` (zero at its
    start). The zero of the map is therefore always the colour ``cmap(norm(0))``.

    Args:
      maps: ``[H, W]`` or ``[B, H, W]`` float maps (any range, any sign).
      sign: one of :data:`SIGNS` (``"auto"``: ``"all"`` if any value < 0).
      cmap: sequential colormap (default :data:`SEQUENTIAL_CMAP`).
      diverging_cmap: colormap of signed displays (default :data:`DIVERGING_CMAP`).
      normalize: divide each map by its largest magnitude; ``False`` shows the values as
        given (expected in ``[0, 1]``, or ``[-1, 1]`` when signed).
    """
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim not in (2, 3):
        raise ValueError(f"maps must be [H, W] or [B, H, W], got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("maps must be finite (got NaN or inf values)")
    sign = resolve_sign(m, sign)
    shown = {
        "all": m,
        "positive": np.maximum(m, 0.0),
        "absolute_value": np.abs(m),
        "negative": np.maximum(-m, 0.0),
    }[sign]
    if normalize:
        flat = np.abs(shown).reshape((-1,) + shown.shape[-2:]).max(axis=(-2, -1))
        scale = np.where(flat > 0, flat, 1.0).reshape(shown.shape[:-2] + (1, 1))
        shown = shown / scale
    name = diverging_cmap if sign == "all" else (cmap or SEQUENTIAL_CMAP)
    norm = Normalize(-1.0, 1.0) if sign == "all" else Normalize(0.0, 1.0)
    rule = display_rule(sign, cmap=name, normalize=normalize)
    return MapDisplay(shown, sign, matplotlib.colormaps[name], norm, rule)


# ----------------------------------------------------------------------------- overlays


def overlay_image(
    image,
    heatmap,
    *,
    alpha: float = 0.6,
    cmap: str | None = None,
    sign: str = "auto",
    normalize: bool = True,
) -> np.ndarray:
    """Blends a heatmap, coloured by its display rule (:func:`map_display`), into an image.

    .. math::
        O = \\alpha\\,\\mathrm{cmap}(\\mathrm{norm}(v)) + (1 - \\alpha)\\,x

    with :math:`v` the displayed values of :func:`map_display` (a signed map on the
    diverging colormap with 0 at its white centre; an unsigned one from black at 0).

    Args:
      image: ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]`` float image in ``[0, 1]``.
      heatmap: ``[H, W]`` float map.
      alpha: weight of the coloured heatmap, in ``[0, 1]``.
      cmap: colormap (default: :data:`DIVERGING_CMAP` for signed displays,
        :data:`SEQUENTIAL_CMAP` otherwise).
      sign: display rule, one of :data:`SIGNS`.
      normalize: scale the map by its largest magnitude (see :func:`map_display`).

    Returns:
      ``[H, W, 3]`` float64 RGB in ``[0, 1]``.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    img = _as_rgb(image)
    hm = np.asarray(heatmap, dtype=np.float64)
    if hm.shape != img.shape[:2]:
        raise ValueError(f"heatmap must be [H, W] = {img.shape[:2]}, got shape {hm.shape}")
    d = _display(hm, sign, cmap, normalize)
    colored = d.cmap(d.norm(d.values))[..., :3]
    return alpha * colored + (1.0 - alpha) * img


def _display(maps, sign, cmap, normalize) -> MapDisplay:
    """:func:`map_display` where ``cmap`` overrides the colormap of either kind of display."""
    sign = resolve_sign(maps, sign)
    kw = {"diverging_cmap": cmap} if (sign == "all" and cmap) else {"cmap": cmap}
    return map_display(maps, sign, normalize=normalize, **kw)


#: How a map figure shows the image under a map (``image_display=``).
IMAGE_DISPLAYS = ("outline", "blend", "none")
#: Colour of the image outline: in neither default colormap.
OUTLINE_COLOR = "#00c853"


def _check_image_display(image_display: str, alpha: float) -> None:
    if image_display not in IMAGE_DISPLAYS:
        raise ValueError(f"image_display must be one of {IMAGE_DISPLAYS}, got {image_display!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")


def _image_note(image_display: str, alpha: float) -> str:
    """The sentence a map figure carries about the image under its maps."""
    if image_display == "outline":
        return "maps drawn opaque; green line: the image's outline (intensity ½ of its range)"
    if image_display == "blend":
        return (
            f"maps blended over the image ({alpha:.0%} map): dark or bright pixels shift "
            "the colours"
        )
    return "maps drawn opaque, without the image"


def _draw_map(ax, image, d: MapDisplay, values, image_display: str, alpha: float):
    """One map on ``ax`` by ``image_display``; returns the map's
    :class:`~matplotlib.image.AxesImage` (its ``to_rgba`` gives the map's colours).

    ``"outline"``: the map opaque, the image's iso-line at half its intensity range on top
    (so every pixel's colour is the map's); ``"blend"``: the image (grey or RGB) under the
    map drawn at ``alpha``; ``"none"``: the map alone.
    """
    img = _as_rgb(image)
    if image_display == "blend":
        if np.allclose(img[..., 0], img[..., 1]) and np.allclose(img[..., 0], img[..., 2]):
            ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        return ax.imshow(values, cmap=d.cmap, norm=d.norm, alpha=alpha, interpolation="nearest")
    im = ax.imshow(values, cmap=d.cmap, norm=d.norm, interpolation="nearest")
    if image_display == "outline":
        lum = img @ np.array([0.299, 0.587, 0.114])
        lo, hi = float(lum.min()), float(lum.max())
        if hi > lo:
            ax.contour(lum, levels=[(lo + hi) / 2], colors=OUTLINE_COLOR, linewidths=0.7)
    return im


def _colorbar(fig: Figure, cax, mappable, d: MapDisplay, width: int = 40):
    cb = fig.colorbar(mappable, cax=cax, orientation="horizontal")
    if d.sign == "all":
        cb.set_ticks([-1.0, 0.0, 1.0])
    else:
        cb.set_ticks([0.0, 0.5, 1.0])
    cb.ax.tick_params(labelsize=7)
    cb.set_label(textwrap.fill(d.rule, width), fontsize=7)
    cb.solids.set_alpha(1.0)
    return cb


def overlay(
    image,
    heatmap,
    alpha: float = 0.6,
    *,
    cmap: str | None = None,
    sign: str = "auto",
    normalize: bool = True,
    image_display: str = "outline",
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    """Figure of one heatmap on its image, with a colour bar naming the display rule
    (``sign``, :func:`map_display`) and how the image is shown (``image_display``: one of
    :data:`IMAGE_DISPLAYS`, see :func:`heatmap_grid`; ``alpha`` is the blend's map weight)."""
    _check_image_display(image_display, alpha)
    img = _as_rgb(image)
    hm = np.asarray(heatmap, dtype=np.float64)
    if hm.shape != img.shape[:2]:
        raise ValueError(f"heatmap must be [H, W] = {img.shape[:2]}, got shape {hm.shape}")
    d = _display(hm, sign, cmap, normalize)
    fig = _figure(figsize=(3, 3.8), layout="constrained")
    ax, cax = fig.subplots(2, 1, height_ratios=[1, 0.06])
    im = _draw_map(ax, img, d, d.values, image_display, alpha)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    cb = _colorbar(fig, cax, im, d, width=45)
    cb.set_label(cb.ax.get_xlabel() + "\n" + textwrap.fill(_image_note(image_display, alpha), 45))
    return _save(fig, path)


def heatmap_grid(
    images,
    heatmaps: Mapping[str, np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    alpha: float = 0.6,
    cmap: str | None = None,
    sign: str | Mapping[str, str] = "auto",
    image_display: str = "outline",
    show_image: bool = True,
    normalize: bool = True,
    path: PathLike = None,
) -> Figure:
    """Grid of heatmap overlays: one row per image, one column per layer or method.

    Each column is shown under one display rule (:func:`map_display`): ``sign="auto"``
    shows a column with any negative value as signed (``RdBu_r``, white = 0) and the others
    from black = 0 (``inferno``); each map is divided by its largest magnitude, never
    min–max stretched. Signed columns are marked ``(signed)`` in their title, and the
    bottom row holds one colour bar per rule used, labelled with the rule.

    Args:
      images: ``[B, H, W, C]`` float images in ``[0, 1]``.
      heatmaps: ``{name: [B, H, W]}`` maps (columns in dict order).
      titles: optional ``B`` row labels (e.g. ``"pred 7"``).
      alpha: map weight when ``image_display="blend"``.
      cmap: colormap overriding the default of every column's rule.
      sign: one of :data:`SIGNS` for every column, or ``{name: sign}`` (missing names:
        ``"auto"``).
      image_display: how the image appears under each map: ``"outline"`` (default: the
        map opaque, so every pixel has the map's own colour, with the image's iso-line at
        half its intensity range in green), ``"blend"`` (the map at ``alpha`` over the
        image, the paper's figures; colours then mix with the image) or ``"none"``.
      show_image: prepend a column with the plain image.
      normalize: divide every map by its largest magnitude (raw gradients are not in
        ``[0, 1]``); all-zero maps stay zero.
      path: optional output file.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C], got shape {images.shape}")
    _check_image_display(image_display, alpha)
    b = images.shape[0]
    for name, hm in heatmaps.items():
        if np.shape(hm) != (b,) + images.shape[1:3]:
            raise ValueError(
                f"heatmaps[{name!r}] must be [B, H, W] = {(b,) + images.shape[1:3]}, "
                f"got shape {np.shape(hm)}"
            )
    if titles is not None and len(titles) != b:
        raise ValueError(f"titles must give one label per image ({b}), got {len(titles)}")
    signs = dict(sign) if isinstance(sign, Mapping) else {}
    unknown = [k for k in signs if k not in heatmaps]
    if unknown:
        raise ValueError(f"sign: unknown map names {unknown}; heatmaps has {list(heatmaps)}")
    default_sign = "auto" if isinstance(sign, Mapping) else sign
    names = list(heatmaps)
    ncol = len(names) + int(show_image)
    if ncol == 0:
        raise ValueError("heatmaps must hold at least one map (or show_image=True)")
    shown = {n: _display(heatmaps[n], signs.get(n, default_sign), cmap, normalize) for n in names}
    rules = list(dict.fromkeys(d.rule for d in shown.values()))
    fig = _figure(figsize=(1.6 * ncol + 0.3, 1.6 * b + (0.9 if rules else 0.2)))
    cb_rows = 1 if rules else 0
    gs = fig.add_gridspec(
        b + cb_rows,
        ncol,
        height_ratios=[1.0] * b + [0.5] * cb_rows,
        hspace=0.08,
        wspace=0.05,
        left=0.02 + 0.06 * (titles is not None),
        right=0.98,
        bottom=0.02,
        top=0.95,
    )
    axes = np.empty((b, ncol), dtype=object)
    mappables = {}
    for r in range(b):
        for c in range(ncol):
            ax = axes[r, c] = fig.add_subplot(gs[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
        col = 0
        if show_image:
            axes[r, 0].imshow(_as_rgb(images[r]), interpolation="nearest")
            if r == 0:
                axes[r, 0].set_title("image", fontsize=8)
            col = 1
        for name in names:
            d = shown[name]
            im = _draw_map(axes[r, col], images[r], d, d.values[r], image_display, alpha)
            mappables.setdefault(d.rule, (im, d))
            if r == 0:
                label = name + (" (signed)" if d.sign == "all" else "")
                title = textwrap.fill(label, 20, break_long_words=False)
                axes[r, col].set_title(title, fontsize=7)
            col += 1
        if titles is not None:
            axes[r, 0].set_ylabel(titles[r], fontsize=8)
    if rules:
        bounds = np.linspace(0, ncol, len(rules) + 1).round().astype(int)
        sub = gs[b, :].subgridspec(2, ncol, height_ratios=[0.25, 1.0])
        for i, rule in enumerate(rules):
            lo, hi = bounds[i], max(bounds[i + 1], bounds[i] + 1)
            cax = fig.add_subplot(sub[0, lo:hi])
            im, d = mappables[rule]
            _colorbar(fig, cax, im, d, width=max(18, int(22 * (hi - lo))))
    if names:
        fig.text(0.5, 0.0, _image_note(image_display, alpha), ha="center", va="top", fontsize=7)
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
    fig = _figure(figsize=(max(3.0, 0.6 * len(counts) + 1.5), 3))
    ax = fig.add_subplot()
    names = list(counts)
    bars = ax.bar(range(len(names)), [counts[n] for n in names], color="tab:blue")
    ax.bar_label(bars, fontsize=8)
    rotate = len(names) > 6
    ax.set_xticks(
        range(len(names)), names, rotation=45 if rotate else 0, ha="right" if rotate else "center"
    )
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
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
      cmap: colormap for single-channel crops (each crop is stretched from its own minimum
        to its maximum for contrast; the figure says so).
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
    fig = _figure(figsize=(1.5 * ncol + 0.5, 1.8 * nrow))
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
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.03, top=0.96, hspace=0.35)
    note = "crops are images, not maps: each stretched from its own min (black) to max (white)"
    fig.text(0.5, 0.0, textwrap.fill(note, 12 * ncol + 18), ha="center", va="top", fontsize=7)
    return _save(fig, path)


#: Line styles cycled (with ``tab10``'s colours) when a panel has more curves than colours.
_LINESTYLES = ("-", "--", "-.", ":")
#: Markers added once colours and line styles are used up (40 curves in a panel).
_MARKERS = ("", "o", "s", "^", "v", "D")
#: Grey reference curves: (grey level, line style) pairs, all distinct.
_REFERENCE_STYLES = (
    ("0.45", ":"),
    ("0.45", "--"),
    ("0.45", "-."),
    ("0.7", ":"),
    ("0.7", "--"),
    ("0.7", "-."),
)


def _auc(curve: np.ndarray) -> float:
    """RISE's normalised trapezoidal AUC of a curve on ``[0, 1]``."""
    n = curve.shape[-1] - 1
    return float((curve.sum() - curve[0] / 2 - curve[-1] / 2) / max(n, 1))


def _curve_stats(name, curve) -> tuple[np.ndarray, np.ndarray | None]:
    y = np.asarray(curve, dtype=np.float64)
    if y.ndim == 2:
        return y.mean(axis=0), y.std(axis=0)
    if y.ndim == 1:
        return y, None
    raise ValueError(f"curves[{name!r}] must be [n] or [B, n], got shape {y.shape}")


def curve_styles(
    groups: Mapping[str, Sequence[str]], references: Sequence[str] = ()
) -> dict[str, dict[str, str]]:
    """Default ``{name: {"color", "linestyle"}}`` of :func:`curves_plot`: within each panel
    ``tab10``'s colours in order (line styles change after ten), references in grey with
    their own line styles; no two curves of a panel share colour and style."""
    colors = matplotlib.colormaps["tab10"].colors
    styles: dict[str, dict[str, str]] = {}
    for members in groups.values():
        for i, name in enumerate(members):
            styles.setdefault(
                name,
                {
                    "color": matplotlib.colors.to_hex(colors[i % len(colors)]),
                    "linestyle": _LINESTYLES[(i // len(colors)) % len(_LINESTYLES)],
                    "marker": _MARKERS[(i // (len(colors) * len(_LINESTYLES))) % len(_MARKERS)],
                },
            )
    for i, name in enumerate(references):
        grey, ls = _REFERENCE_STYLES[i % len(_REFERENCE_STYLES)]
        styles[name] = {"color": grey, "linestyle": ls}
    return styles


def curves_plot(
    curves: Mapping[str, np.ndarray],
    title: str = "",
    *,
    xlabel: str = "fraction of pixels",
    ylabel: str = "score",
    groups: Mapping[str, Sequence[str]] | None = None,
    references: Sequence[str] = (),
    styles: Mapping[str, Mapping[str, str]] | None = None,
    aucs: Mapping[str, float] | None = None,
    path: PathLike = None,
) -> Figure:
    """Curves over a unit x-range (e.g. insertion/deletion per method) as small multiples.

    One panel per group (default: one panel with every curve), sharing the y axis; the
    ``references`` (e.g. trivial maps) are drawn in grey in every panel. Each legend entry
    carries the curve's AUC and sits below its panel, outside the data.

    Args:
      curves: ``{name: [n]}`` curves, or ``[B, n]`` (plotted as the mean over ``B`` with a
        ±1 std band).
      title: figure title.
      xlabel, ylabel: axis labels.
      groups: ``{panel title: [names]}``; every name must be a key of ``curves``. Default:
        one panel with every curve not in ``references``.
      references: names drawn (grey) in every panel.
      styles: ``{name: {"color": ..., "linestyle": ..., "marker": ...}}`` (marker optional)
        overriding
        :func:`curve_styles`' defaults.
      aucs: ``{name: AUC}`` shown in the legend (e.g. the mean of per-image AUCs); default
        the AUC of the plotted (mean) curve by RISE's trapezoidal rule,
        :math:`(\\sum_i c_i - c_0/2 - c_n/2)/n`.
      path: optional output file.
    """
    references = list(references)
    if groups is None:
        groups = {"": [n for n in curves if n not in references]}
    for where, names in [("references", references)] + [
        (f"groups[{g!r}]", list(m)) for g, m in groups.items()
    ]:
        missing = [n for n in names if n not in curves]
        if missing:
            raise ValueError(f"{where}: unknown curve names {missing}; curves has {list(curves)}")
    stats = {name: _curve_stats(name, c) for name, c in curves.items()}
    style = curve_styles(groups, references)
    for name, s in (styles or {}).items():
        style[name] = {**style.get(name, {}), **s}
    npanel = max(1, len(groups))
    nleg = max([len(m) for m in groups.values()] + [0]) + len(references)
    leg_h = 0.16 * nleg + 0.1
    fig = _figure(figsize=(3.3 * npanel + 0.4, 2.6 + leg_h), layout="constrained")
    grid = fig.subplots(2, npanel, squeeze=False, height_ratios=[2.4, leg_h])
    axes, legend_axes = grid[0], grid[1]
    for ax in axes[1:]:
        ax.sharey(axes[0])
        ax.tick_params(labelleft=False)
    for ax, lax, (panel, members) in zip(axes, legend_axes, groups.items(), strict=False):
        for name in list(members) + references:
            mean, std = stats[name]
            x = np.linspace(0.0, 1.0, mean.shape[0])
            area = float(aucs[name]) if aucs and name in aucs else _auc(mean)
            s = style[name]
            ref = name in references and name not in members
            ax.plot(
                x,
                mean,
                color=s["color"],
                linestyle=s["linestyle"],
                marker=s.get("marker", ""),
                markevery=max(1, (mean.shape[0] - 1) // 8),
                markersize=3,
                linewidth=1.2 if ref else 1.6,
                label=f"{name} (AUC {area:.3f})",
            )
            if std is not None:
                ax.fill_between(x, mean - std, mean + std, color=s["color"], alpha=0.15)
        ax.set_xlabel(xlabel)
        if panel:
            ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3)
        lax.set_axis_off()
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            lax.legend(
                handles, labels, fontsize=7, loc="upper center", borderaxespad=0.0, frameon=False
            )
    for lax in legend_axes[len(groups) :]:
        lax.set_axis_off()
    axes[0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def ablation_plot(
    mus,
    full,
    relevant,
    random,
    *,
    random_std=None,
    title: str = "Ablation",
    ylabel: str = "accuracy",
    path: PathLike = None,
) -> Figure:
    """Accuracy against μ: the full network, its relevant filters ablated, and as many random
    filters ablated (per layer), as :mod:`svebi_jax.metrics.ablation` measures.

    Args:
      mus: ``[n]`` positive μ values (log x axis).
      full: scalar or ``[n]`` accuracy of the unablated network.
      relevant: ``[n]`` accuracy with the relevant filters ablated.
      random: ``[n]`` or ``[n, R]`` accuracy with as many random filters ablated (``R`` draws
        are shown as mean ± std).
      random_std: optional ``[n]`` standard deviation over draws of a ``[n]`` ``random``
        (e.g. from a results file that kept only mean and sd), shown as a ±1 sd band.
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
    if random_std is not None:
        random_std = np.asarray(random_std, dtype=np.float64)
        if random.shape != (n,) or random_std.shape != (n,):
            raise ValueError(
                f"random_std needs [n] = [{n}] random and random_std, got shapes "
                f"{random.shape} and {random_std.shape}"
            )
    fig = _figure(figsize=(5.2, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(mus, full, color="black", linestyle="--", label="full network")
    ax.plot(
        mus,
        relevant,
        color="tab:blue",
        linestyle="-",
        marker="o",
        ms=3,
        label="relevant filters\nablated",
    )
    random_label = "as many random\nfilters ablated"
    if random_std is not None:
        random_label += "\n(mean ± sd over draws)"
        ax.fill_between(
            mus, random - random_std, random + random_std, color="tab:orange", alpha=0.2
        )
    if random.ndim == 2:
        mean, std = random.mean(axis=1), random.std(axis=1)
        random_label += f"\n(mean ± sd, {random.shape[1]} draws)"
        ax.fill_between(mus, mean - std, mean + std, color="tab:orange", alpha=0.2)
    else:
        mean = random
    ax.plot(mus, mean, color="tab:orange", linestyle="-.", marker="s", ms=3, label=random_label)
    if np.all(mus > 0):
        ax.set_xscale("log")
    ax.set_xlabel("μ")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return _save(fig, path)
