"""The Markdown report of the MNIST experiment (``report.md``)."""

from __future__ import annotations

from collections.abc import Sequence

from experiments.common import tables
from experiments.common.methods import MethodKey
from svebi_jax.attribution import COMBINED

# The paper's Table 1 (insertion, deletion) on MNIST, for comparison.
PAPER_TABLE1 = {
    "SVEBI": (0.8459, 0.3516),
    "SNN-Grad2D": (0.8199, 0.3285),
    "SNN-IG2D": (0.7814, 0.1678),
}


#: What the colours and panels of the Table 1 figures mean (the figures say it too).
FIG6_CAPTION = (
    "Curves: one panel per family (SVEBI variants: colour = layer, solid = aligned, dashed = "
    "stretched; gradient methods; SNN-specific and other methods), the trivial maps in grey "
    "in every panel; each legend entry carries the method's AUC from the table."
)
FIG5_CAPTION = (
    "Maps: unsigned maps on `inferno` from black = 0 to each map's maximum; signed maps "
    "(marked *signed*, e.g. SNN-IG2D) on `RdBu_r` centred on white = 0 (red > 0, blue < 0), "
    "scaled by each map's max |value|; never min–max stretched. Green line: the digit's "
    "outline."
)


def paper_row(key: MethodKey) -> tuple[float, float] | None:
    """The paper's (insertion, deletion) for a row: its SVEBI number beside the combined
    aligned map, the baselines beside theirs."""
    if key.is_svebi:
        combined_aligned = (key.layer, key.placement) == (COMBINED, "aligned")
        return PAPER_TABLE1["SVEBI"] if combined_aligned else None
    return PAPER_TABLE1.get(key.method)


def report(r: dict, methods: Sequence[MethodKey]) -> str:
    """The human-readable report (Markdown) of ``results.json`` and the table's method keys."""
    key_of = {k.label: k for k in methods}
    lines = (
        _summary(r)
        + _relevant_filters(r)
        + _explanations()
        + _insertion_deletion(r, key_of)
        + _ig_completeness(r)
        + _sanity(r)
        + _ablation(r)
        + tables.timings(r)
    )
    return "\n".join(lines) + "\n"


def _summary(r: dict) -> list[str]:
    """Title, data, accuracy and the μ-lasso's convergence."""
    lasso = r["lasso"]
    return [
        "# SVEBI on MNIST with the shallow SNN",
        "",
        f"- training data: `{r['dataset']}` ({r['n_train']} images); test data: "
        f"{r['test_dataset']} ({r['n_test']} images)",
        f"- **test accuracy: {r['test_accuracy']:.4f}**",
        f"- μ-lasso at μ = {r['mu']:g}: objective {lasso['objective']:.4f} "
        "(sum over classes), "
        f"{lasso['iterations']} iterations, residual {lasso['residual']:.2e}, "
        f"converged: {lasso['converged']}",
        "",
    ]


def _relevant_filters(r: dict) -> list[str]:
    """The relevant filters per class and layer, and their layer distribution (Fig. 3c)."""
    layers = r["layer_distribution"]
    lines = [
        f"## Relevant filters (μ = {r['mu']:g})",
        "",
        "| class | " + " | ".join(layers) + " |",
        "|---|" + "---|" * len(layers),
    ]
    for c, by_layer in r["relevant_filters"].items():
        cells = (", ".join(map(str, by_layer.get(k, []))) or "—" for k in layers)
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines + [
        "",
        "Layer distribution (Fig. 3c): " + ", ".join(f"{k}: {v}" for k, v in layers.items()),
        "",
        "![layer distribution](fig3c_layer_distribution.png)",
        "",
    ]


def _explanations() -> list[str]:
    """The SVEBI heatmaps (Fig. 4) and the interpretation crops."""
    return [
        "## Explanations (Fig. 4) and interpretation",
        "",
        "Columns: per-layer SVEBI heatmaps with receptive-field-aligned placement and with the "
        "authors' stretched placement.",
        "",
        "![heatmaps](fig4_heatmaps.png)",
        "",
        "![interpretation](fig_interpretation.png)",
        "",
    ]


def _insertion_deletion(r: dict, key_of: dict[str, MethodKey]) -> list[str]:
    """Table 1 (insertion/deletion), coverage, per-class insertion, ranking and figures."""
    lines = [
        f"## Insertion / deletion (Table 1), {r['n_eval']} test images, RISE protocol",
        "",
        "Mean of per-image AUCs (AUC of the mean curve in brackets). Insertion: higher is "
        "better; deletion: lower is better. Trivial baselines are there to calibrate the table.",
        "",
    ]
    lines += tables.insdel_table(r, key_of, paper_row)
    lines += [""] + tables.coverage_table(r, key_of)
    lines += _per_class_insertion(r, key_of)
    lines += [""] + tables.ranking(r, key_of)
    return lines + [
        "",
        "The paper's SVEBI row is placed beside our combined aligned map; the paper does not say "
        "which layer its number comes from.",
        "",
        FIG6_CAPTION,
        "",
        "![insertion](fig6_insertion.png) ![deletion](fig6_deletion.png)",
        "",
        FIG5_CAPTION,
        "",
        "![methods](fig5_methods.png)",
        "",
    ]


def _per_class_insertion(r: dict, key_of: dict[str, MethodKey]) -> list[str]:
    """Insertion AUC per predicted class (stretched SVEBI rows left out); none if absent."""
    per_class = r.get("per_class_insertion", {})
    if not per_class:
        return []
    k = len(next(iter(per_class.values())))
    lines = [
        "",
        "### Insertion AUC per predicted class",
        "",
        "| method | " + " | ".join(str(c) for c in range(k)) + " |",
        "|---|" + "---|" * k,
    ]
    for name, vals in per_class.items():
        if key_of[name].placement != "stretch":
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return lines


def _ig_completeness(r: dict) -> list[str]:
    """How far IG's attributions are from completeness under surrogate gradients."""
    ig = r["ig_completeness"]
    return [
        "## IG completeness (surrogate gradients)",
        "",
        f"Mean |Σ attributions − (f(x) − f(0))| = {ig['mean_abs_gap']:.4f} "
        f"against a mean |f(x) − f(0)| of "
        f"{ig['mean_abs_output_difference']:.4f} "
        f"({ig['n_images']} images): the spiking forward pass is piecewise "
        "constant, so the surrogate path integral does not telescope exactly.",
        "",
    ]


def _sanity(r: dict) -> list[str]:
    """The model-randomization check's rank correlations."""
    return [
        "## Sanity check (model randomization, Adebayo et al. 2018)",
        "",
        "Spearman rank correlation between maps of the trained and a re-initialized model "
        "(low = the method depends on the weights; SVEBI keeps the trained model's relevant "
        "filter indices).",
        "",
        "| method | rank correlation |",
        "|---|---|",
    ] + [f"| {k} | {v:.4f} |" for k, v in r["sanity"].items()]


#: The μ values of the ablation table (the figure shows every μ of the path).
ABLATION_TABLE_MUS = (1, 2, 3, 5, 10, 20, 30, 40, 50)


def _ablation(r: dict) -> list[str]:
    """Filter ablation (Fig. 3a): relevant against random filters along the μ path."""
    abl = r["ablation"]
    below = sum(a["relevant"] < a["random"] for a in abl)
    lines = [
        "",
        f"## Filter ablation (Fig. 3a), {r['n_ablation']} test images",
        "",
        f"Full model (class-averaged): {abl[0]['full']:.4f}. Relevant-filter ablation is below "
        f"random ablation (same count per layer) at {below} of {len(abl)} μ values.",
        "",
        "| μ | filters ablated / class | relevant ablated | "
        f"random ablated (mean ± sd over {r['config']['ablation_random_draws']} draws) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {a['mu']:g} | {a['num_ablated']:.1f} | {a['relevant']:.4f} | "
        f"{a['random']:.4f} ± {a['random_std']:.4f} |"
        for a in abl
        if a["mu"] in ABLATION_TABLE_MUS
    ]
    return lines + ["", "![ablation](fig3a_ablation.png)", ""]
