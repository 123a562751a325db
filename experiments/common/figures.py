"""The experiments' figures of Table 1: insertion/deletion curves and every method's maps.

Curves are small multiples, one panel per family of methods (SVEBI variants; gradient
methods; SNN-specific and other methods), with the trivial maps drawn in grey in every panel
as references. Within the SVEBI panel the colour names the layer and the line style the
placement (solid: receptive-field-aligned, dashed: stretched). Maps follow
:func:`svebi_jax.viz.heatmap_grid`'s display rules (signed maps on a diverging colormap
centred on zero).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from experiments.common.methods import GRAD2D, IG2D, MethodKey
from svebi_jax import viz

__all__ = ["PANELS", "curve_panels", "insdel_figures", "methods_figure"]

#: Panel titles of the curve figures, in order.
PANELS = ("SVEBI variants", "gradient methods", "SNN-specific and other methods")

_GRADIENT = (GRAD2D, IG2D)
#: Line styles per placement; layers beyond the 10 colours take the next style, then markers.
_PLACEMENT_STYLES = {"aligned": ("-", ":"), "stretch": ("--", "-.")}
_MARKERS = ("", "o", "s", "^", "v", "D")


def _panel(key: MethodKey) -> str | None:
    if key.is_trivial:
        return None
    if key.is_svebi:
        return PANELS[0]
    if key.method in _GRADIENT:
        return PANELS[1]
    return PANELS[2]


def curve_panels(
    keys: Sequence[MethodKey],
) -> tuple[dict[str, list[str]], list[str], dict[str, dict[str, str]]]:
    """``(groups, references, styles)`` for :func:`svebi_jax.viz.curves_plot` from the rows'
    keys: panels of :data:`PANELS` that have members (keys in table order), the trivial
    maps' labels as references, and SVEBI's styles (colour per layer, line style per
    placement, then the next line style and markers beyond ten layers; the other panels keep
    ``curves_plot``'s distinct defaults)."""
    groups: dict[str, list[str]] = {p: [] for p in PANELS}
    references = []
    for key in keys:
        panel = _panel(key)
        if panel is None:
            references.append(key.label)
        else:
            groups[panel].append(key.label)
    groups = {p: m for p, m in groups.items() if m}
    colors = matplotlib.colormaps["tab10"].colors
    layers = list(dict.fromkeys(k.layer for k in keys if k.is_svebi))
    styles = {}
    for k in keys:
        if k.is_svebi:
            i = layers.index(k.layer)
            cycle, n = divmod(i, len(colors))
            placement = _PLACEMENT_STYLES.get(k.placement, (":", "-."))
            styles[k.label] = {
                "color": matplotlib.colors.to_hex(colors[n]),
                "linestyle": placement[cycle % 2],
                "marker": _MARKERS[(cycle // 2) % len(_MARKERS)],
            }
    return groups, references, styles


def insdel_figures(out: pathlib.Path | None, scored: Mapping[str, Any]) -> dict[str, Figure]:
    """``fig6_insertion.png`` and ``fig6_deletion.png``: each method's mean curve, the mean
    of its per-image AUCs (the table's number) in its legend entry.

    Args:
      out: the run directory (``None``: write nothing).
      scored: :func:`experiments.common.stages.scores`' result (``curves``, ``table``,
        ``maps`` keyed by :class:`~experiments.common.methods.MethodKey`, ``predicted``).

    Returns:
      ``{"insertion": Figure, "deletion": Figure}``.
    """
    groups, references, styles = curve_panels(list(scored["maps"]))
    n = len(scored["predicted"])
    better = {"insertion": "higher", "deletion": "lower"}
    figs = {}
    for mode in ("insertion", "deletion"):
        figs[mode] = viz.curves_plot(
            scored["curves"][mode],
            f"{mode}: mean curve over {n} images; legend: mean of per-image AUCs "
            f"({better[mode]} is better); grey: trivial maps",
            ylabel="p(predicted class)",
            groups=groups,
            references=references,
            styles=styles,
            aucs={label: row[mode] for label, row in scored["table"].items()},
            path=None if out is None else out / f"fig6_{mode}.png",
        )
    return figs


def methods_figure(images, scored: Mapping[str, Any], path: pathlib.Path | None) -> Figure:
    """``fig5_methods.png``: the maps of ``images`` (the first scored images) by every method
    but the stretched and random ones, each column under its display rule."""
    k = len(images)
    shown = {
        key.label: maps[:k]
        for key, maps in scored["maps"].items()
        if key.placement != "stretch" and key.variant != "random"
    }
    return viz.heatmap_grid(images, shown, path=path)
