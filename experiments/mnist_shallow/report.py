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
    lines = [
        "# SVEBI on MNIST with the shallow SNN",
        "",
        f"- training data: `{r['dataset']}` ({r['n_train']} images); test data: "
        f"{r['test_dataset']} ({r['n_test']} images)",
        f"- **test accuracy: {r['test_accuracy']:.4f}**",
        f"- μ-lasso at μ = {r['mu']:g}: objective {r['lasso']['objective']:.4f} "
        "(sum over classes), "
        f"{r['lasso']['iterations']} iterations, residual {r['lasso']['residual']:.2e}, "
        f"converged: {r['lasso']['converged']}",
        "",
        f"## Relevant filters (μ = {r['mu']:g})",
        "",
        "| class | " + " | ".join(r["layer_distribution"]) + " |",
        "|---|" + "---|" * len(r["layer_distribution"]),
    ]
    for c, by_layer in r["relevant_filters"].items():
        lines.append(
            f"| {c} | "
            + " | ".join(
                ", ".join(map(str, by_layer.get(k, []))) or "—" for k in r["layer_distribution"]
            )
            + " |"
        )
    lines += [
        "",
        "Layer distribution (Fig. 3c): "
        + ", ".join(f"{k}: {v}" for k, v in r["layer_distribution"].items()),
        "",
        "![layer distribution](fig3c_layer_distribution.png)",
        "",
        "## Explanations (Fig. 4) and interpretation",
        "",
        "Columns: per-layer SVEBI heatmaps with receptive-field-aligned placement and with the "
        "authors' stretched placement.",
        "",
        "![heatmaps](fig4_heatmaps.png)",
        "",
        "![interpretation](fig_interpretation.png)",
        "",
        f"## Insertion / deletion (Table 1), {r['n_eval']} test images, RISE protocol",
        "",
        "Mean of per-image AUCs (AUC of the mean curve in brackets). Insertion: higher is "
        "better; deletion: lower is better. Trivial baselines are there to calibrate the table.",
        "",
    ]
    lines += tables.insdel_table(r, key_of, paper_row)
    lines += [""] + tables.coverage_table(r, key_of)
    per_class = r.get("per_class_insertion", {})
    if per_class:
        k = len(next(iter(per_class.values())))
        lines += [
            "",
            "### Insertion AUC per predicted class",
            "",
            "| method | " + " | ".join(str(c) for c in range(k)) + " |",
            "|---|" + "---|" * k,
        ]
        for name, vals in per_class.items():
            if key_of[name].placement == "stretch":
                continue
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    lines += [""] + tables.ranking(r, key_of)
    lines += [
        "",
        "The paper's SVEBI row is placed beside our combined aligned map; the paper does not say "
        "which layer its number comes from.",
        "",
        "![insertion](fig6_insertion.png) ![deletion](fig6_deletion.png)",
        "",
        "![methods](fig5_methods.png)",
        "",
        "## IG completeness (surrogate gradients)",
        "",
        f"Mean |Σ attributions − (f(x) − f(0))| = {r['ig_completeness']['mean_abs_gap']:.4f} "
        f"against a mean |f(x) − f(0)| of "
        f"{r['ig_completeness']['mean_abs_output_difference']:.4f} "
        f"({r['ig_completeness']['n_images']} images): the spiking forward pass is piecewise "
        "constant, so the surrogate path integral does not telescope exactly.",
        "",
        "## Sanity check (model randomization, Adebayo et al. 2018)",
        "",
        "Spearman rank correlation between maps of the trained and a re-initialized model "
        "(low = the method depends on the weights; SVEBI keeps the trained model's relevant "
        "filter indices).",
        "",
        "| method | rank correlation |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.4f} |" for k, v in r["sanity"].items()]
    abl = r["ablation"]
    below = sum(a["relevant"] < a["random"] for a in abl)
    lines += [
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
    for a in abl:
        if a["mu"] in (1, 2, 3, 5, 10, 20, 30, 40, 50):
            lines.append(
                f"| {a['mu']:g} | {a['num_ablated']:.1f} | {a['relevant']:.4f} | "
                f"{a['random']:.4f} ± {a['random_std']:.4f} |"
            )
    lines += ["", "![ablation](fig3a_ablation.png)", ""] + tables.timings(r)
    return "\n".join(lines) + "\n"
