"""The experiments' figures (Table 1's curves and maps), rendered from inputs of the exact
kinds the commands pass (``stages.scores``' result), checked without eyes."""

import matplotlib
import numpy as np
from matplotlib.colors import to_rgba

from experiments.common import figures, stages
from experiments.common.methods import GRAD2D, IG2D, SAM, SVEBI, TRIVIAL, MethodKey
from svebi_jax import viz

N, H, STEPS = 3, 10, 6


def _keys():
    """The rows of ``table_methods`` (table order) plus methods the table may gain."""
    svebi = [
        MethodKey(SVEBI, layer, p)
        for p in ("aligned", "stretch")
        for layer in ("conv1", "conv2", "combined")
    ]
    keys = sorted(svebi, key=lambda k: k.label)
    keys += [MethodKey(GRAD2D), MethodKey(IG2D), MethodKey(SAM, "conv1"), MethodKey(SAM, "conv2")]
    keys += [MethodKey("Grad-CAM", "conv2"), MethodKey("LRP"), MethodKey("TSA", variant="S")]
    keys += [
        MethodKey(TRIVIAL, variant=v) for v in ("random", "input intensity", "centred Gaussian")
    ]
    return keys


def _scored():
    rng = np.random.default_rng(0)
    keys = _keys()
    images = np.zeros((N, H, H, 1))
    images[:, 2:8, 4:6] = 1.0
    x = np.linspace(0, 1, STEPS + 1)
    curves, per_image, table, maps = {"insertion": {}, "deletion": {}}, {}, {}, {}
    per_image = {"insertion": {}, "deletion": {}}
    for i, k in enumerate(keys):
        ins = x ** (0.3 + 0.1 * i) * np.ones((N, 1))
        dele = 1 - ins
        for mode, c in (("insertion", ins), ("deletion", dele)):
            curves[mode][k.label] = c.mean(0)
            per_image[mode][k.label] = (c.sum(1) - c[:, 0] / 2 - c[:, -1] / 2) / STEPS
        table[k.label] = {m: float(per_image[m][k.label].mean()) for m in per_image}
        on = images[..., 0] > 0
        m = np.where(on, rng.random((N, H, H)), 0.0)
        maps[k] = np.where(on, rng.normal(size=(N, H, H)), 0.0) if k.method == IG2D else m
    scored = {
        "table": table,
        "per_class_insertion": {k.label: [0.5] * 10 for k in keys},
        "curves": curves,
        "per_image": per_image,
        "maps": maps,
        "predicted": np.zeros(N, int),
        "labels": np.zeros(N, int),
    }
    return images, scored


def test_write_scores_writes_every_table_figure(tmp_path):
    images, scored = _scored()
    results = {}
    stages.write_scores(tmp_path, scored, results, images)
    for name in ("fig6_insertion.png", "fig6_deletion.png", "fig5_methods.png"):
        assert (tmp_path / name).stat().st_size > 5000
    assert results["insertion_deletion"] is scored["table"]


def test_curve_figures_panels_styles_legends():
    _, scored = _scored()
    groups, refs, styles = figures.curve_panels(list(scored["maps"]))
    assert list(groups) == list(figures.PANELS)
    assert groups["gradient methods"] == ["SNN-Grad2D", "SNN-IG2D"]
    snn = [k.label for k in _keys() if k.method in (SAM, "Grad-CAM", "LRP", "TSA")]
    assert len(snn) == 5 and groups["SNN-specific and other methods"] == snn
    assert refs == ["trivial: random", "trivial: input intensity", "trivial: centred Gaussian"]
    # SVEBI: colour = layer, line style = placement
    assert styles["SVEBI[conv1,aligned]"]["color"] == styles["SVEBI[conv1,stretch]"]["color"]
    assert styles["SVEBI[conv1,aligned]"]["linestyle"] == "-"
    assert styles["SVEBI[conv1,stretch]"]["linestyle"] == "--"
    figs = figures.insdel_figures(None, scored)
    for mode, fig in figs.items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        data_axes = [ax for ax in fig.axes if ax.lines]
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert len(data_axes) == len(legends) == 3
        for ax, leg in zip(data_axes, legends, strict=True):
            labels = [t.get_text() for t in leg.get_texts()]
            assert labels == [ln.get_label() for ln in ax.lines]  # the panel's own curves
            drawn = {
                (to_rgba(ln.get_color()), ln.get_linestyle(), ln.get_marker())
                for ln in leg.get_lines()
            }
            assert len(drawn) == len(labels)  # no two entries share colour and style
            assert sum("trivial" in lab for lab in labels) == 3  # grey refs in every panel
            box = leg.get_window_extent(renderer)
            assert not any(box.overlaps(a.get_window_extent(renderer)) for a in data_axes)
            for lab in labels:  # the table's number (mean of per-image AUCs) in the legend
                name, auc = lab.rsplit(" (AUC ", 1)
                assert abs(float(auc.rstrip(")")) - scored["table"][name][mode]) <= 5e-4
        grey = [ln for ln in data_axes[0].lines if ln.get_label().startswith("trivial")]
        assert all(
            matplotlib.colors.to_rgb(ln.get_color())[0]
            == matplotlib.colors.to_rgb(ln.get_color())[2]
            for ln in grey
        )
        assert fig.get_suptitle().startswith(f"{mode}: mean curve over {N} images")


def test_methods_figure_shows_signed_columns_with_zero_at_white():
    images, scored = _scored()
    fig = figures.methods_figure(images, scored, None)
    titles = [ax.get_title().replace("\n", "") for ax in fig.axes]
    assert "SNN-IG2D (signed)" in titles
    assert not any("stretch" in t or "random" in t for t in titles)
    ig = [ax for ax in fig.axes if ax.get_title().replace("\n", "") == "SNN-IG2D (signed)"][0]
    im = ig.get_images()[-1]
    assert im.cmap.name == viz.DIVERGING_CMAP and im.norm(0.0) == 0.5
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())
    x, y = ig.transData.transform((0, 0))
    rendered = buf[int(round(buf.shape[0] - y)), int(round(x)), :3] / 255
    np.testing.assert_allclose(rendered, im.cmap(im.norm(0.0))[:3], atol=2.5 / 255)
    text = "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))
    assert "white = 0" in text and "black = 0" in text


def _key_of_label(label: str) -> MethodKey:
    if label.startswith("SVEBI["):
        layer, placement = label[6:-1].split(",")
        return MethodKey(SVEBI, layer, placement)
    if label.startswith("SAM["):
        return MethodKey(SAM, label[4:-1])
    if label.startswith("trivial: "):
        return MethodKey(TRIVIAL, variant=label[len("trivial: ") :])
    return MethodKey(label)


def test_mnist_report_text_unchanged_apart_from_figure_captions():
    """The report of the committed MNIST run is, captions of the figures aside, byte for
    byte the text the report gave before it was split into sections (SHA-256 of that text)."""
    import hashlib
    import json
    import pathlib

    from experiments.mnist_shallow import report

    path = pathlib.Path(__file__).parents[1] / "experiments/results/mnist_test10k/results.json"
    r = json.loads(path.read_text())
    text = report.report(r, [_key_of_label(lab) for lab in r["insertion_deletion"]])
    assert report.FIG5_CAPTION in text and report.FIG6_CAPTION in text
    for caption in (report.FIG5_CAPTION, report.FIG6_CAPTION):
        text = text.replace(caption + "\n\n", "", 1)
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest == "2c2cf72a71ad34f0f8c46af1dc5415cdf36b7ad291d190ed169ce556a5d1d8ab"


def test_awa2_sized_figures_keep_curves_apart_and_zero_white_on_photos():
    """SVGG19's 16 conv layers (+ combined) × 2 placements: 34 SVEBI curves in one panel,
    no two drawn alike; signed maps on RGB photographs keep zero at the colormap's centre."""
    layers = [f"conv{i}" for i in range(1, 17)] + ["combined"]
    keys = [MethodKey(SVEBI, layer, p) for p in ("aligned", "stretch") for layer in layers]
    keys += [MethodKey(GRAD2D), MethodKey(TRIVIAL, variant="random")]
    groups, refs, styles = figures.curve_panels(keys)
    svebi = groups["SVEBI variants"]
    assert len(svebi) == 34
    drawn = {(styles[n]["color"], styles[n]["linestyle"], styles[n]["marker"]) for n in svebi}
    assert len(drawn) == 34
    x = np.linspace(0, 1, 9)
    curves = {k.label: x ** (0.2 + 0.05 * i) for i, k in enumerate(keys)}
    fig = viz.curves_plot(curves, groups=groups, references=refs, styles=styles)
    fig.canvas.draw()
    leg = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None][0]
    lines = leg.get_lines()
    assert len(lines) == 35
    seen = {(to_rgba(ln.get_color()), ln.get_linestyle(), ln.get_marker()) for ln in lines}
    assert len(seen) == 35
    # an RGB photograph with a signed map (as AwA2's SNN-IG2D column)
    rng = np.random.default_rng(0)
    photo = np.broadcast_to(np.linspace(0, 1, 16)[None, None, :, None], (1, 16, 16, 3)) * [
        1.0,
        0.8,
        0.5,
    ]  # a colour ramp: its outline is one vertical line in the middle
    signed = np.zeros((1, 16, 16))
    signed[0, 5:11, 5:11] = rng.normal(size=(6, 6))
    fig = viz.heatmap_grid(photo, {"SNN-IG2D": signed})
    ax = [a for a in fig.axes if a.get_title().startswith("SNN-IG2D")][0]
    im = ax.get_images()[-1]
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())
    px, py = ax.transData.transform((1, 1))
    rendered = buf[int(round(buf.shape[0] - py)), int(round(px)), :3] / 255
    np.testing.assert_allclose(rendered, im.cmap(im.norm(0.0))[:3], atol=0.03)
