"""Tests for svebi_jax.viz: display rules read back from the rendered figures.

Checks what can be checked without eyes: the colour a zero renders as (from the Agg pixel
buffer), the display rule named in the figure's text, legend entries told apart by colour
or line style, AUCs in the legends, legends outside the data.
"""

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from svebi_jax import viz

H = W = 12


def _scene(b: int = 2):
    """Images with a bright bar, an unsigned map and a signed map that are 0 off the bar."""
    images = np.zeros((b, H, W, 1))
    images[:, 3:9, 5:7] = 1.0
    rng = np.random.default_rng(0)
    on = np.zeros((b, H, W), bool)
    on[:, 3:9, 4:8] = True
    unsigned = np.where(on, 0.2 + rng.random((b, H, W)), 0.0)
    signed = np.where(on, rng.normal(size=(b, H, W)), 0.0)
    signed[:, 3, 4], signed[:, 4, 4] = -6.0, 2.0  # clearly signed, |min| > max
    return images, unsigned, signed


def _pixel(fig, ax, row: int, col: int) -> np.ndarray:
    """The rendered RGB (0..1) at the centre of data pixel (row, col) of an image axes."""
    if not getattr(fig, "_test_drawn", False):
        fig.canvas.draw()
        fig._test_drawn = True
    buf = np.asarray(fig.canvas.buffer_rgba())
    x, y = ax.transData.transform((col, row))
    return buf[int(round(buf.shape[0] - y)), int(round(x)), :3] / 255.0


def _texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


def test_map_display_hand_computed():
    m = np.array([[-2.0, 0.0], [1.0, 0.0]])
    d = viz.map_display(m)  # auto: signed
    assert d.sign == "all" and d.cmap.name == viz.DIVERGING_CMAP
    np.testing.assert_allclose(d.values, [[-1.0, 0.0], [0.5, 0.0]])
    assert d.norm(0.0) == 0.5 and d.norm(-1.0) == 0.0 and d.norm(1.0) == 1.0
    assert "white = 0" in d.rule
    pos = viz.map_display(m, "positive")
    np.testing.assert_allclose(pos.values, [[0.0, 0.0], [1.0, 0.0]])
    assert pos.norm(0.0) == 0.0 and pos.cmap.name == viz.SEQUENTIAL_CMAP
    np.testing.assert_allclose(viz.map_display(m, "absolute_value").values, [[1, 0], [0.5, 0]])
    np.testing.assert_allclose(viz.map_display(m, "negative").values, [[1, 0], [0, 0]])
    # a stack: one decision for all maps, each map scaled by its own max |value|
    stack = np.stack([m, np.abs(m) * 4, np.zeros_like(m)])
    ds = viz.map_display(stack)
    assert ds.sign == "all"
    np.testing.assert_allclose(ds.values[1], [[1.0, 0.0], [0.5, 0.0]])
    np.testing.assert_array_equal(ds.values[2], 0.0)  # an all-zero map stays zero
    assert viz.resolve_sign(np.abs(m)) == "positive"
    np.testing.assert_allclose(viz.map_display(m, normalize=False).values, m)
    with pytest.raises(ValueError, match="sign must be one of"):
        viz.map_display(m, "signed")
    with pytest.raises(ValueError, match="maps must be finite"):
        viz.map_display(np.full((2, 2), np.nan))


@pytest.mark.parametrize("image_display", ["outline", "blend"])
def test_zero_background_renders_as_the_colour_of_zero(image_display):
    images, unsigned, signed = _scene()
    fig = viz.heatmap_grid(
        images, {"unsigned": unsigned, "signed": signed}, image_display=image_display
    )
    axes = [ax for ax in fig.axes if ax.get_images()]
    grid = np.asarray(axes[: 2 * 3], dtype=object).reshape(2, 3)
    for r in range(2):
        for col, zero_of in ((1, viz.SEQUENTIAL_CMAP), (2, viz.DIVERGING_CMAP)):
            ax = grid[r, col]
            im = ax.get_images()[-1]  # the map layer
            zero = np.asarray(im.cmap(im.norm(0.0))[:3])
            np.testing.assert_allclose(zero, matplotlib.colormaps[zero_of](0.5 * (col == 2))[:3])
            # the map layer's own colours: the background is the colour of zero
            rgba = im.to_rgba(im.get_array())
            np.testing.assert_allclose(rgba[0, 0, :3], zero, atol=1e-6)
            # the rendered pixels, far from the bar (and from its outline)
            expected = zero if image_display == "outline" else 0.6 * zero + 0.4 * 0.0
            np.testing.assert_allclose(_pixel(fig, ax, 0, 0), expected, atol=2.5 / 255)
            np.testing.assert_allclose(_pixel(fig, ax, 10, 10), expected, atol=2.5 / 255)
    # the signed column: a negative pixel is blue, a positive one red (zero did not move)
    if image_display == "outline":
        neg, pos = _pixel(fig, grid[0, 2], 3, 4), _pixel(fig, grid[0, 2], 4, 4)
        assert neg[2] > neg[0] + 0.3 and pos[0] > pos[2] + 0.3


def test_min_max_stretch_would_fail_the_zero_check():
    """The check above can fail: the former min–max display put a signed map's zero
    mid-colormap, away from white."""
    _, _, signed = _scene(1)
    hm = signed[0]
    stretched = (hm - hm.min()) / np.ptp(hm)
    d = viz.map_display(hm)
    assert abs(stretched[0, 0] - 0.5) > 0.05
    colour = d.cmap(stretched[0, 0])[:3]
    assert np.max(np.abs(np.subtract(colour, d.cmap(d.norm(0.0))[:3]))) > 0.05


def test_figure_text_names_the_display_rule():
    images, unsigned, signed = _scene()
    fig = viz.heatmap_grid(images, {"SVEBI": unsigned, "SNN-IG2D": signed}, ["a", "b"])
    text = _texts(fig)
    assert "SNN-IG2D (signed)" in text.replace("\n", "")
    assert "RdBu_r" in text and "white = 0" in text and "max |value|" in text.replace("\n", " ")
    assert "inferno" in text and "black = 0" in text
    assert "green line" in text
    only_unsigned = _texts(viz.heatmap_grid(images, {"SVEBI": unsigned}))
    assert "white = 0" not in only_unsigned and "black = 0" in only_unsigned
    fig = viz.overlay(images[0], signed[0], title="IG")
    assert "white = 0" in _texts(fig)
    im = fig.axes[0].get_images()[-1]
    np.testing.assert_allclose(_pixel(fig, fig.axes[0], 0, 0), im.cmap(im.norm(0))[:3], atol=0.01)
    # per-column signs (Captum's names)
    fig = viz.heatmap_grid(images, {"IG": signed}, sign={"IG": "absolute_value"})
    assert "|map|" in _texts(fig) and "white = 0" not in _texts(fig)
    with pytest.raises(ValueError, match="sign: unknown map names"):
        viz.heatmap_grid(images, {"IG": signed}, sign={"ig": "all"})
    with pytest.raises(ValueError, match="image_display must be one of"):
        viz.heatmap_grid(images, {"IG": signed}, image_display="contour")


def test_overlay_image_blends_the_display_colours():
    images, _, signed = _scene(1)
    ov = viz.overlay_image(images[0], signed[0], alpha=0.6)
    rdbu = matplotlib.colormaps["RdBu_r"]
    np.testing.assert_allclose(ov[0, 0], 0.6 * np.asarray(rdbu(0.5)[:3]))  # zero: white-ish
    m = np.abs(signed[0]).max()
    expected = 0.6 * np.asarray(rdbu((signed[0, 5, 6] / m + 1) / 2)[:3]) + 0.4 * 1.0
    np.testing.assert_allclose(ov[5, 6], expected)
    with pytest.raises(ValueError, match="heatmap must be"):
        viz.overlay_image(images[0], signed[0, :5])


def _legend_checks(fig):
    """Every legend: distinct (colour, style) per entry, and outside every data axes."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    data_axes = [ax for ax in fig.axes if ax.lines]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends
    for leg in legends:
        seen = set()
        for line in leg.get_lines():
            key = (to_rgba(line.get_color()), line.get_linestyle(), line.get_marker())
            assert key not in seen, f"two legend entries drawn as {key}"
            seen.add(key)
        box = leg.get_window_extent(renderer)
        for ax in data_axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), "legend covers data"
    return legends


def test_curves_plot_panels_aucs_and_legends():
    x = np.linspace(0.0, 1.0, 5)
    curves = {f"m{i}": x ** (i + 1) for i in range(12)}  # more curves than tab10 colours
    curves["trivial: random"] = x
    curves["trivial: input"] = np.stack([x, x**0.5])  # [B, n]: mean ± std
    groups = {"first": [f"m{i}" for i in range(11)], "second": ["m11"]}
    refs = ["trivial: random", "trivial: input"]
    fig = viz.curves_plot(curves, "insertion", groups=groups, references=refs)
    legends = _legend_checks(fig)
    assert len(legends) == 2
    labels = [t.get_text() for t in legends[0].get_texts()]
    assert len(labels) == 13
    # RISE's AUC by hand: x^2 on 5 points -> (0 + 1/16 + 1/4 + 9/16 + 1 - 1/2) / 4 = 0.34375
    assert labels[1] == "m1 (AUC 0.344)" and labels[11] == "trivial: random (AUC 0.500)"
    assert [t.get_text() for t in legends[1].get_texts()][1:] == labels[11:]  # refs everywhere
    ref_lines = [ln for ln in fig.axes[0].lines if ln.get_label().startswith("trivial")]
    greys = {matplotlib.colors.to_hex(ln.get_color()) for ln in ref_lines}
    assert greys <= {"#737373", "#b3b3b3"}
    fig = viz.curves_plot(curves, aucs={"m0": 0.123})
    assert "m0 (AUC 0.123)" in _texts(fig)
    _legend_checks(fig)
    with pytest.raises(ValueError, match=r"groups\['a'\]: unknown curve names \['zz'\]"):
        viz.curves_plot(curves, groups={"a": ["zz"]})


def test_ablation_legend_outside():
    fig = viz.ablation_plot([1.0, 2.0, 3.0], 0.9, [0.8, 0.5, 0.3], np.ones((3, 2)) * 0.7)
    (leg,) = _legend_checks(fig)
    labels = [t.get_text().replace("\n", " ") for t in leg.get_texts()]
    assert labels == [
        "full network",
        "relevant filters ablated",
        "as many random filters ablated (mean ± sd, 2 draws)",
    ]
    fig = viz.ablation_plot([1.0, 2.0], 0.9, [0.8, 0.5], [0.7, 0.6], random_std=[0.01, 0.02])
    (band,) = fig.axes[0].collections  # the ±1 sd band spans exactly mean ± sd
    np.testing.assert_allclose(band.get_paths()[0].vertices[:, 1].min(), 0.58)
    np.testing.assert_allclose(band.get_paths()[0].vertices[:, 1].max(), 0.71)
    with pytest.raises(ValueError, match="random_std needs"):
        viz.ablation_plot([1.0, 2.0], 0.9, [0.8, 0.5], np.ones((2, 3)), random_std=[0.1, 0.1])


def test_every_figure_writes(tmp_path):
    images, unsigned, signed = _scene()
    rng = np.random.default_rng(1)
    figs = {
        "overlay.png": lambda p: viz.overlay(images[0], unsigned[0], path=p),
        "grid.png": lambda p: viz.heatmap_grid(images, {"a": unsigned, "b": signed}, path=p),
        "dist.png": lambda p: viz.layer_distribution_plot({"conv1": 3, "conv2": 7}, path=p),
        "interp.png": lambda p: viz.interpretation_grid(
            {0: [np.ones((5, 5, 1)), np.eye(5)[..., None]], 1: {4: np.zeros((14, 14, 1))}},
            path=p,
        ),
        "curves.pdf": lambda p: viz.curves_plot({"a": rng.random((3, 6))}, "x", path=p),
        "ablation.png": lambda p: viz.ablation_plot(
            [0.1, 1.0], 0.98, [0.9, 0.8], [0.5, 0.4], path=p
        ),
    }
    for name, make in figs.items():
        fig = make(tmp_path / name)
        assert fig.axes
        assert (tmp_path / name).stat().st_size > 1000
        if name == "interp.png":  # crops are stretched for contrast, and the figure says so
            assert "stretched from its own min" in _texts(fig).replace("\n", " ")
