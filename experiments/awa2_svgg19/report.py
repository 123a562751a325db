"""The Markdown report of the AwA2 / SVGG19 experiment (``report.md``)."""

from __future__ import annotations

from collections.abc import Sequence

from experiments.common import tables
from experiments.common.methods import MethodKey
from svebi_jax.attribution import COMBINED

#: The paper's AwA2 numbers: accuracies and Table 1's SVEBI row (insertion, deletion).
PAPER_TRAIN_ACCURACY = 0.9989
PAPER_TEST_ACCURACY = 0.8983
PAPER_SVEBI_AWA2 = (0.7582, 0.1969)


def paper_row(key: MethodKey) -> tuple[float, float] | None:
    """The paper's SVEBI AwA2 row, placed beside the combined aligned map."""
    if key.is_svebi and (key.layer, key.placement) == (COMBINED, "aligned"):
        return PAPER_SVEBI_AWA2
    return None


def report(r: dict, methods: Sequence[MethodKey]) -> str:
    """The human-readable report (Markdown) of ``results.json`` and the table's method keys."""
    key_of = {k.label: k for k in methods}
    cfg = r["config"]
    layers = list(r["layer_distribution"])
    lines = [
        "# SVEBI on AwA2-style data with the spiking VGG19 (SVGG19)",
        "",
        f"- data: `{r['dataset']}`, {len(r['classes'])} classes, seeded "
        f"{1 - cfg['test_fraction']:.0%}/{cfg['test_fraction']:.0%} split: {r['n_train']} "
        f"training and {r['n_test']} test images at {cfg['image_size']}²",
        f"- network: SVGG19, T = {cfg['num_steps']}, β = {cfg['beta']:g}, θ = 1, block widths "
        f"{r['widths']}, fc {r['hidden']} (width scale {cfg['width_scale']:g})",
        f"- initialization: {r['initialization']}",
        f"- training: {cfg['epochs']} epochs, batch {cfg['batch_size']}, Adam at "
        f"{cfg['learning_rate']:g} (constant), on {r.get('devices', 1)} device(s)"
        + (" (data-parallel mesh)" if cfg.get("data_parallel") else ""),
        f"- **test accuracy: {r['test_accuracy']:.4f}** (paper {PAPER_TEST_ACCURACY:.4f}); "
        f"training accuracy after training: {r['train_accuracy']:.4f} (paper "
        f"{PAPER_TRAIN_ACCURACY:.4f})",
        f"- unreadable images skipped: {len(r['unreadable'])}"
        + "".join(f"\n  - `{p}`: {why}" for p, why in r["unreadable"].items()),
        f"- μ-lasso at μ = {r['mu']:g} on {r['n_responses']} × "
        f"{sum(r['widths'][b] * n for b, n in enumerate((2, 2, 4, 4, 4)))} responses: "
        f"objective {r['lasso']['objective']:.4f} (sum over classes), "
        f"{r['lasso']['iterations']} iterations, converged: {r['lasso']['converged']}",
        "",
        f"## Relevant filters per layer (Fig. 3c, μ = {r['mu']:g})",
        "",
        "| " + " | ".join(layers) + " |",
        "|" + "---|" * len(layers),
        "| " + " | ".join(str(r["layer_distribution"][k]) for k in layers) + " |",
        "",
        "![layer distribution](fig3c_layer_distribution.png)",
        "",
        "## Interpretation (Fig. 4)",
        "",
        f"Mean of the top-{cfg['top_k']} receptive-field crops (around each image's peak) of "
        f"up to six relevant `{r['interpret_layer']}` filters per class.",
        "",
        "![interpretation](fig4_interpretation.png)"
        if r["interpretation_figure"]
        else f"(no class has a relevant `{r['interpret_layer']}` filter: no figure)",
        "",
        "## Heatmaps (Fig. 5)",
        "",
        "SVEBI per layer, receptive-field-aligned and stretched placement:",
        "",
        "![heatmaps](fig5_heatmaps.png)",
        "",
        "Every method on the same images:",
        "",
        "![methods](fig5_methods.png)",
        "",
        f"## Insertion / deletion (Table 1, AwA2 columns), {r['n_eval']} test images",
        "",
        "RISE protocol: insertion starts from an 11×11, σ = 5 blurred copy, deletion ends in "
        f"black, {r['pixels_per_step']} pixels per step (224 steps, the paper's 224 pixels per "
        "step at 224² scaled to this size). Mean of per-image AUCs (AUC of the mean curve in "
        "brackets); insertion higher and deletion lower is better. The trivial maps calibrate "
        "the table.",
        "",
    ]
    lines += tables.insdel_table(r, key_of, paper_row)
    lines += [""] + tables.coverage_table(r, key_of)
    lines += [""] + tables.ranking(r, key_of)
    lines += [
        "",
        "The paper's SVEBI row (7,056 test images, ImageNet-initialized SVGG19 at 224², T = 25) "
        "is placed beside our combined aligned map; numbers from a reduced run (fewer images, "
        "classes, pixels, timesteps, channels) are not comparable with it.",
        "",
        "![insertion](fig6_insertion.png) ![deletion](fig6_deletion.png)",
        "",
    ]
    lines += tables.timings(r)
    return "\n".join(lines) + "\n"
