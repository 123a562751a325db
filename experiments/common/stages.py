"""Pipeline stages shared by every experiment, each a small function over the library.

    data → train_or_restore → accuracy → relevance (responses, μ-lasso, masks)
         → explanation_figure → interpretation_figure → scores (insertion/deletion, coverage)
         → ig_completeness → sanity → ablation → report

Stages take the model as ``(apply_fn, params)`` and images through the library's data
interface (:mod:`svebi_jax.batching`: a :class:`~svebi_jax.data.Dataset`, an image array, or
an iterable of ``(images, labels)`` batches), so an experiment on streamed data reuses them.
They return plain results (dicts of floats, arrays) and write figures into the run directory
they are given; none of them prints more than a line per method.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.common.methods import MethodKey
from svebi_jax import (
    batching,
    checkpoint,
    data,
    interpret,
    relevance,
    responses,
    train,
    viz,
)
from svebi_jax.attribution import AttrFn, svebi_variants
from svebi_jax.methods import ig
from svebi_jax.metrics import ablation, insdel, sanity
from svebi_jax.models import ShallowSNN, SpikingNetwork
from svebi_jax.relevance import Relevance, fit_relevance

__all__ = [
    "RelevanceStage",
    "ablation_stage",
    "accuracy",
    "explanation_figure",
    "ig_completeness",
    "interpretation_figure",
    "load_data",
    "relevance_stage",
    "sanity_stage",
    "scores",
    "take",
    "train_or_restore",
]


# ----------------------------------------------------------------------------- data, model


def load_data(spec: str, test_spec: str | None, *, test_fraction: float, seed: int):
    """``(train, test)`` datasets: ``test_spec``'s test split, or a held-out part of ``spec``."""
    full = data.load(spec, split="train", seed=seed)
    if test_spec:
        return full, data.load(test_spec, split="test", seed=seed)
    return data.split(full, test_fraction, seed=seed)


def take(ds, n: int):
    """The first ``n`` examples (all when ``n`` is 0 or larger than the set)."""
    return ds if n <= 0 or n >= len(ds) else data.subset(ds, n)


def shallow_snn(config: train.TrainConfig, train_data) -> SpikingNetwork:
    """The paper's MNIST model, initialized from ``config.seed`` (the default model builder)."""
    return ShallowSNN(rngs=nnx.Rngs(config.seed), config=config.snn)


def train_or_restore(
    train_data,
    *,
    out: pathlib.Path,
    checkpoint_dir: str | None,
    train_config: train.TrainConfig,
    progress: bool,
    build_model: Callable[[train.TrainConfig, Any], SpikingNetwork] = shallow_snn,
    fit: Callable | None = None,
):
    """The model: restored from ``checkpoint_dir`` or trained, and saved to ``out/checkpoint``.

    A restored checkpoint is copied into the run (so every run directory is self-contained,
    and replacing an earlier run never deletes the checkpoint it was started from).

    Args:
      train_data: the training set.
      out: the run directory.
      checkpoint_dir: a checkpoint to restore instead of training, or ``None``.
      train_config: the training configuration.
      progress: show a progress bar while training.
      build_model: ``(train_config, train_data) -> SpikingNetwork`` (e.g. an SVGG19 builder).
      fit: ``(model, train_data, config=, progress=) -> (params, history)``; default
        :func:`svebi_jax.train.fit` (which takes an in-memory set or a stream), e.g. a
        ``functools.partial`` of it with ``mesh=`` and ``checkpoint_dir=``.

    Returns:
      ``(model, history)``.
    """
    target = out / "checkpoint"
    if (target / checkpoint.MANIFEST_FILE).is_file():  # a resumed run that finished training
        model = checkpoint.restore_model(target)
        return model, checkpoint.load_metrics(target).get("history", {})
    if checkpoint_dir:
        model = checkpoint.restore_model(checkpoint_dir)
        history = checkpoint.load_metrics(checkpoint_dir).get("history", {})
        shutil.copytree(checkpoint_dir, target)
        return model, history
    model = build_model(train_config, train_data)
    fit = fit or train.fit
    params, history = fit(model, train_data, config=train_config, progress=progress)
    nnx.update(model, params)
    checkpoint.save_checkpoint(
        target,
        nnx.state(model),
        config=checkpoint.model_config(model) | {"train": train_config.to_dict()},
        metrics={"history": history},
    )
    return model, history


# ----------------------------------------------------------------------------- streamed data


class Streamed:
    """An ``ImageSource`` pass for the stages, remembering which items it delivered.

    Iterating yields the source's fixed-shape :class:`~svebi_jax.data.stream.Batch` es (in
    source order, read ahead by ``num_workers`` processes; a progress bar titled
    ``progress`` if given); the stages drop rows whose
    ``mask`` is False (unreadable files, padding). Afterwards :attr:`indices` holds the
    source positions of the delivered rows in order, so row ``r`` of anything a stage
    computed (``X``, AUCs) is item ``indices[r]`` of the source, and :attr:`skipped` the
    unreadable files (path and reason).
    """

    def __init__(
        self,
        source,
        batch_size: int,
        *,
        num_workers: int = 0,
        prefetch: int = 2,
        progress: str | None = None,
    ):
        self.source, self.batch_size = source, batch_size
        self.num_workers, self.prefetch = num_workers, prefetch
        self.progress = progress
        self.indices = np.zeros(0, np.int64)
        self.skipped: list = []

    def __iter__(self):
        kept = []
        with self.source.batches(
            self.batch_size, num_workers=self.num_workers, prefetch=self.prefetch
        ) as it:
            bar = None
            if self.progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(it), desc=self.progress, unit="batch")
            try:
                for batch in it:
                    kept.append(np.asarray(batch.index)[np.asarray(batch.mask)])
                    yield batch
                    if bar is not None:
                        bar.update(1)
            finally:
                if bar is not None:
                    bar.close()
            self.skipped = list(it.skipped)
        self.indices = np.concatenate(kept).astype(np.int64) if kept else self.indices

    def images_of(self, rows: np.ndarray) -> np.ndarray:
        """The images behind delivered rows ``rows``, read again from the source."""
        return self.source.gather(self.indices[np.asarray(rows)]).images


def accuracy(apply_fn, params, test_data, *, batch_size: int = 500) -> float:
    """Test accuracy (:func:`svebi_jax.train.evaluate`, ``batch_size`` images per step)."""
    acc, _ = train.evaluate(apply_fn, params, test_data, batch_size)
    return float(acc)


# ----------------------------------------------------------------------------- relevance


@dataclasses.dataclass
class RelevanceStage:
    """What the relevance stage finds.

    Attributes:
      responses: the training set's :class:`~svebi_jax.responses.Responses`.
      relevance: the :class:`svebi_jax.Relevance` at ``mu``.
      path: the :class:`svebi_jax.Relevance` of the μ path (``relevance`` itself as a
        one-μ path when no path was asked for).
      summary: the JSON-able part of ``results.json`` (``mu``, ``relevant_filters``,
        ``layer_distribution``, ``lasso``).
    """

    responses: responses.Responses
    relevance: Relevance
    path: Relevance
    summary: dict

    @property
    def masks(self) -> dict[str, np.ndarray]:
        """``{layer: [K, C]}`` relevance masks at ``mu``."""
        return {k: np.asarray(v) for k, v in self.relevance.masks.items()}

    @property
    def relevant(self) -> dict:
        """``{class: {layer: [channels]}}`` at ``mu``."""
        return self.relevance.filters

    @property
    def mus(self) -> np.ndarray:
        """``[P]`` the path's μ values."""
        return np.asarray(self.path.mu)


def relevance_stage(
    apply_fn,
    params,
    train_data,
    *,
    mu: float,
    mu_path_max: int,
    batch_size: int,
    timer,
    mesh=None,
    checkpoint_dir: str | None = None,
) -> RelevanceStage:
    """Responses X, L of the training data → :func:`svebi_jax.fit_relevance` at ``mu`` and
    on the path ``1..mu_path_max``.

    ``mu_path_max = 0`` skips the path (no ablation follows): the path is then ``mu`` alone.
    ``mesh`` and ``checkpoint_dir`` are :func:`~svebi_jax.responses.compute_responses`'
    (data-parallel extraction; resumable shards of X); the responses are computed once and
    serve both fits and the interpretation crops.
    """
    with timer("responses"):
        resp = responses.compute_responses(
            apply_fn,
            params,
            train_data,
            batch_size=batch_size,
            mesh=mesh,
            checkpoint_dir=checkpoint_dir,
        )
    with timer("mu_lasso"):
        rel = fit_relevance(apply_fn, params, resp, mu)
    if mu_path_max:
        with timer("mu_lasso_path"):
            mus = np.arange(1, mu_path_max + 1, dtype=np.float32)
            path = fit_relevance(apply_fn, params, resp, mus)
        path_converged = bool(np.all(path.lasso.converged))
    else:
        path = dataclasses.replace(rel, W=rel.W[None], mu=np.asarray([mu]), lasso=None)
        path_converged = None
    sol = rel.lasso
    summary = {
        "mu": mu,
        "relevant_filters": {
            str(c): {layer: [int(ch) for ch in chans] for layer, chans in by_layer.items()}
            for c, by_layer in rel.filters.items()
        },
        "layer_distribution": rel.layer_distribution(),
        "lasso": {
            "objective": float(np.sum(sol.objective)),
            "objective_per_class": np.asarray(sol.objective).tolist(),
            "iterations": int(np.max(sol.iterations)),
            "residual": float(np.max(sol.residual)),
            "converged": bool(np.all(sol.converged)),
            "path_converged": path_converged,
        },
    }
    return RelevanceStage(resp, rel, path, summary)


# ----------------------------------------------------------------------------- figures


def explanation_figure(apply_fn, params, images, masks, path: pathlib.Path) -> None:
    """Fig. 4: per-layer SVEBI heatmaps of ``images``, aligned and stretched."""
    placements = ("aligned", "stretch")
    maps = svebi_variants(apply_fn, masks, placements=placements)(params, jnp.asarray(images))
    cols = {f"{k} ({p})": np.asarray(maps[(k, p)]) for p in placements for k in masks}
    viz.heatmap_grid(images, cols, path=path)


def interpretation_figure(
    apply_fn,
    params,
    train_data,
    rel: RelevanceStage,
    *,
    layer: str,
    top_k: int,
    path: pathlib.Path,
    images_of: Callable[[np.ndarray], np.ndarray] | None = None,
    batch_size: int = 256,
) -> None:
    """Top-k receptive-field crops of each class's (up to 6) most relevant ``layer`` filters.

    Only the top-k images of the shown filters are read: ``images_of(rows)`` returns the
    ``[len(rows), H, W, C]`` images behind rows ``rows`` (ascending) of ``X`` (default:
    ``train_data.images[rows]``), so a streamed training set is read for a few hundred
    images, not held in memory. The crops equal those over the whole set (the top-k of a
    filter lie among the rows read, in the same order).
    """
    if images_of is None:
        images_of = lambda rows: np.asarray(train_data.images)[rows]  # noqa: E731
    X = np.asarray(rel.responses.X)
    k = min(top_k, X.shape[0])
    crops, titles = {}, {}
    for c, per_layer in rel.relevant.items():
        chans = per_layer[layer][:6]
        if not chans:
            continue
        cols = [rel.responses.index.column(layer, ch) for ch in chans]
        rows = np.unique(np.argsort(-X[:, cols], axis=0, kind="stable")[:k])
        got = interpret.interpret_filters(
            apply_fn,
            params,
            images_of(rows),
            X[rows],
            rel.responses.index,
            {layer: chans},
            k=k,
            batch_size=batch_size,
        )
        crops[c] = [got[layer][ch] for ch in chans]
        titles[c] = [f"class {c}: {layer}#{ch}" for ch in chans]
    if crops:
        viz.interpretation_grid(crops, titles=titles, path=path)


# ----------------------------------------------------------------------------- scores


class _Timed:
    """An ``attr_fn`` that adds its wall time (results ready) to ``seconds``."""

    def __init__(self, attr_fn: AttrFn):
        self.attr_fn = attr_fn
        self.seconds = 0.0

    def __call__(self, params, images, target=None):
        t0 = time.perf_counter()
        out = jax.block_until_ready(self.attr_fn(params, images, target))
        self.seconds += time.perf_counter() - t0
        return out


def scores(
    apply_fn,
    params,
    eval_data,
    methods: Mapping[MethodKey, AttrFn],
    masks: Mapping[str, Any],
    *,
    pixels_per_step: int,
    map_batch: int = 50,
    eval_batch: int | None = None,
    substrate: str | dict[str, str] = "zeros",
    chunk_size: int = 256,
    keep_maps: int | None = None,
    mesh=None,
) -> dict[str, Any]:
    """Table 1: insertion/deletion (RISE) of every method, and SVEBI coverage.

    ``eval_data`` streams through the data interface in batches of ``eval_batch`` images
    (default: all at once, for an in-memory set); per-image AUCs are concatenated.
    ``substrate`` is :func:`~svebi_jax.metrics.insdel.insertion_deletion`'s (``"zeros"``:
    black for both games, as on MNIST; ``{"insertion": "blur", "deletion": "zeros"}``:
    RISE's photographs), ``chunk_size`` the perturbed images per forward pass, and
    ``keep_maps`` how many images' maps are returned (default all; a few for figures keep
    memory independent of the number of images), ``mesh`` the games' data-parallel mesh
    (:func:`~svebi_jax.metrics.insdel.insertion_deletion`).

    Returns:
      ``{"table": {label: row}, "per_class_insertion": {label: [K]}, "curves":
      {mode: {label: mean curve}}, "per_image": {mode: {label: [N] AUCs}}, "maps":
      {key: [N, H, W]}, "predicted": [N], "labels": [N]}``; each row holds ``insertion``,
      ``deletion`` (means of per-image AUCs), their AUC of the mean curve and std,
      ``seconds_maps`` and, for SVEBI, ``coverage`` and the covered-only means.
    """
    if eval_batch is None:
        eval_batch = len(eval_data)
    games: dict[MethodKey, list] = {key: [] for key in methods}
    seconds = {key: 0.0 for key in methods}
    labels = []
    for batch in batching.iter_batches(eval_data, eval_batch, pad=False):
        labels.append(batch.labels)
        for key, attr_fn in methods.items():
            timed = _Timed(attr_fn)
            games[key].append(
                insdel.insertion_deletion(
                    timed,
                    apply_fn,
                    params,
                    jnp.asarray(batch.images),
                    pixels_per_step=pixels_per_step,
                    substrate=substrate,
                    batch_size=map_batch,
                    chunk_size=chunk_size,
                    mesh=mesh,
                )
            )
            if keep_maps is not None:  # keep what the figures show, not every map
                kept = sum(p.maps.shape[0] for p in games[key][:-1])
                last = games[key][-1]
                games[key][-1] = last.replace(maps=last.maps[: max(0, keep_maps - kept)])
            seconds[key] += timed.seconds
    return _table(games, seconds, methods, masks, labels)


def _table(games, seconds, methods, masks, labels) -> dict[str, Any]:
    """:func:`scores`' result from every method's per-batch games."""
    table, per_image, maps = {}, {"insertion": {}, "deletion": {}}, {}
    curves = {"insertion": {}, "deletion": {}}
    for key, parts in games.items():
        row = {"seconds_maps": round(seconds[key], 2)}
        for mode in ("insertion", "deletion"):
            game = _concat([getattr(p, mode) for p in parts])
            row[mode] = float(game.mean_auc)
            row[f"{mode}_auc_of_mean_curve"] = float(game.auc_of_mean_curve)
            row[f"{mode}_std"] = float(np.std(np.asarray(game.auc)))
            curves[mode][key.label] = np.asarray(game.curves).mean(0)
            per_image[mode][key.label] = np.asarray(game.auc)
        predicted = np.asarray(game.classes)
        maps[key] = np.concatenate([np.asarray(p.maps) for p in parts])
        table[key.label] = row
        print(f"  {key.label:32s} ins {row['insertion']:.4f} del {row['deletion']:.4f}")
    _coverage(table, methods, masks, predicted, per_image)
    num_classes = next(iter(masks.values())).shape[0]
    per_class = {
        label: [
            float(a[predicted == c].mean()) if np.any(predicted == c) else float("nan")
            for c in range(num_classes)
        ]
        for label, a in per_image["insertion"].items()
    }
    return {
        "table": table,
        "per_class_insertion": per_class,
        "curves": curves,
        "per_image": per_image,
        "maps": maps,
        "predicted": predicted,
        "labels": None if any(v is None for v in labels) else np.concatenate(labels),
    }


def _concat(parts: list[insdel.CausalMetricResult]) -> insdel.CausalMetricResult:
    """One result from the results of consecutive batches (a single part is returned as is)."""
    if len(parts) == 1:
        return parts[0]
    curves = jnp.concatenate([p.curves for p in parts])
    per_image = jnp.concatenate([p.auc for p in parts])
    return insdel.CausalMetricResult(
        curves=curves,
        auc=per_image,
        mean_auc=per_image.mean(),
        auc_of_mean_curve=insdel.auc(curves.mean(axis=0)),
        classes=jnp.concatenate([p.classes for p in parts]),
        metric=parts[0].metric,
        higher_is_better=parts[0].higher_is_better,
        substrate=parts[0].substrate,
        pixels_per_step=parts[0].pixels_per_step,
    )


def _coverage(table, methods, masks, predicted, per_image) -> None:
    """Adds SVEBI's coverage (images whose class has a relevant filter) to its rows."""
    covered = {
        k: np.asarray(v)
        for k, v in relevance.has_relevant_filters(masks, jnp.asarray(predicted)).items()
    }
    covered["combined"] = np.any(np.stack(list(covered.values())), axis=0)
    for key in methods:
        if not key.is_svebi:
            continue
        row, cov = table[key.label], covered[key.layer]
        row["coverage"] = float(cov.mean())
        for mode in ("insertion", "deletion"):
            auc_cov = per_image[mode][key.label][cov]
            row[f"{mode}_covered"] = float(auc_cov.mean()) if auc_cov.size else float("nan")


def write_scores(out: pathlib.Path, scored: Mapping[str, Any], results: dict, images) -> None:
    """Table 1's outputs: rows into ``results``, ``per_image_auc.npz``, the mean curves
    (``fig6_insertion.png``, ``fig6_deletion.png``) and ``fig5_methods.png``: the maps of
    ``images`` (the first scored images) by every method but the stretched and random ones."""
    results["insertion_deletion"] = scored["table"]
    results["per_class_insertion"] = scored["per_class_insertion"]
    save_per_image(out / "per_image_auc.npz", scored)
    from experiments.common import figures

    figures.insdel_figures(out, scored)
    figures.methods_figure(images, scored, out / "fig5_methods.png")


def save_per_image(path: pathlib.Path, scored: Mapping[str, Any]) -> None:
    """``per_image_auc.npz``: per-image AUCs of every method (rows in table order)."""
    names = list(scored["table"])
    np.savez_compressed(
        path,
        methods=np.asarray(names),
        insertion=np.stack([scored["per_image"]["insertion"][n] for n in names]),
        deletion=np.stack([scored["per_image"]["deletion"][n] for n in names]),
        predicted=scored["predicted"],
        labels=scored["labels"],
    )


def ig_completeness(apply_fn, params, images, *, path_steps: int) -> dict[str, float]:
    """How far IG's attributions are from summing to ``f(x) - f(0)`` (surrogate gradients)."""
    comp = ig.integrated_gradients_result(
        apply_fn, params, jnp.asarray(images), path_steps=path_steps
    ).completeness
    return {
        "mean_abs_gap": float(jnp.mean(jnp.abs(comp.gap))),
        "mean_abs_output_difference": float(jnp.mean(jnp.abs(comp.output_delta))),
        "mean_relative_gap": float(jnp.mean(jnp.abs(comp.relative_gap))),
        "n_images": int(comp.gap.shape[0]),
    }


def sanity_stage(
    params, images, methods: Mapping[MethodKey, AttrFn], *, seed: int
) -> dict[str, float]:
    """Model randomization (Adebayo et al.): mean Spearman ρ of trained vs. random maps.

    Skips the trivial maps (model-independent by construction) and stretched SVEBI maps.
    """
    rparams = sanity.randomize_params(params, jax.random.key(seed + 1))
    images = jnp.asarray(images)
    return {
        key.label: float(sanity.model_randomization_check(fn, params, rparams, images).mean)
        for key, fn in methods.items()
        if not key.is_trivial and key.placement != "stretch"
    }


def ablation_stage(
    apply_fn, params, abl_data, rel: RelevanceStage, *, draws: int, seed: int, batch_size: int
) -> ablation.AblationResult:
    """Fig. 3a: relevant vs. random filter ablation along the μ path."""
    stacked = {k: np.asarray(v) for k, v in rel.path.masks.items()}
    return ablation.ablation_curve(
        apply_fn,
        params,
        abl_data,
        None,
        stacked,
        mu=rel.mus,
        key=jax.random.key(seed),
        n_random=draws,
        batch_size=batch_size,
    )


def ablation_rows(abl: ablation.AblationResult) -> list[dict[str, float]]:
    """The ablation curve as JSON rows, one per μ."""
    return [
        {
            "mu": float(m),
            "full": abl.full,
            "relevant": float(r),
            "random": float(rd),
            "random_std": float(sd),
            "num_ablated": float(na),
        }
        for m, r, rd, sd, na in zip(
            abl.mu, abl.relevant, abl.random, abl.random_std, abl.num_ablated, strict=True
        )
    ]
