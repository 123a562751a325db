"""Relevant filters of each class from the μ-lasso weights.

The μ-lasso (:mod:`svebi_jax.lasso`) returns :math:`W \\in \\mathbb{R}_{\\ge 0}^{m \\times C}`;
filter :math:`f` (a column of ``X``) is *relevant* to class :math:`j` when

.. math::
    W_{fj} > \\tau \\qquad (\\tau = \\texttt{threshold} \\ge 0,\\ \\text{default } 0),

and the relevant filters of a class are ranked by decreasing weight. A class that the network
never predicts has an all-zero column of ``W`` and therefore no relevant filter.

Representation: ``relevant[class][layer]`` is the list of channels, for **every** class
``0..C-1`` and **every** layer of the :class:`~svebi_jax.responses.FilterIndex` (a layer
without relevant filters maps to an empty list), so consumers never need ``.get`` defaults.

The one way in is :func:`fit_relevance`: from a trained network and its training data to a
:class:`Relevance` (the lasso weights with their filter index), which gives the masks, the
relevant filters, the SVEBI attribution function and a file format:

.. code-block:: python

    rel = svebi_jax.fit_relevance(apply_fn, params, train_images, mu=2.0)
    rel.filters[3]["conv2"]            # relevant channels of class 3 in conv2
    attr_fn = rel.attribution()        # attr_fn(params, images, target) -> [B, H, W]
    rel.save("relevance.npz"); rel = Relevance.load("relevance.npz", apply_fn=apply_fn)
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import numbers
import os
import pathlib
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax.lasso import LassoResult, mu_lasso
from svebi_jax.protocols import ApplyFn, model_info
from svebi_jax.responses import FilterIndex, Responses, compute_responses

__all__ = [
    "Relevance",
    "Relevant",
    "fit_relevance",
    "fill_empty_from_path",
    "has_relevant_filters",
    "layer_distribution",
    "masks_from_weights",
    "relevant_filters",
]

#: ``{class: {layer: [channels sorted by descending weight]}}``
Relevant = dict[int, dict[str, list[int]]]


def relevant_filters(W, index: FilterIndex, *, threshold: float = 0.0) -> Relevant:
    """Relevant filters of every class, ranked by decreasing weight.

    Args:
      W: ``[m, C]`` float lasso weights (one μ; select a row of a μ-path result first).
      index: :class:`~svebi_jax.responses.FilterIndex` of the ``m`` columns of ``X``.
      threshold: finite :math:`\\tau \\ge 0`; filter ``f`` is relevant to class ``j`` when
        ``W[f, j] > threshold``.

    Returns:
      ``{j: {layer: [channel, ...]}}`` for every class ``j = 0..C-1`` and every layer of
      ``index`` (in index order; empty list when none). Channels are sorted by descending
      ``W[f, j]``; ties keep ascending channel order.

    Raises:
      ValueError: ``W`` not 2-D, its row count differs from ``index.num_filters``, contains
        NaN/inf, or a bad ``threshold``.
    """
    if isinstance(W, jax.core.Tracer):
        raise TypeError("W must be concrete (relevant_filters returns Python lists)")
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(
            f"W must be [m, C] lasso weights for one mu, got shape {W.shape}"
            + ("; select one mu of the path, e.g. W[i]" if W.ndim == 3 else "")
        )
    if W.shape[0] != index.num_filters:
        raise ValueError(
            f"W must have m = {index.num_filters} rows (index.num_filters), got shape {W.shape}"
        )
    if not np.all(np.isfinite(W)):
        raise ValueError("W contains NaN or inf values")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not math.isfinite(threshold)
        or threshold < 0
    ):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")

    out: Relevant = {}
    for j in range(W.shape[1]):
        per_layer = {}
        for layer in index.layers:
            w = W[index.columns(layer), j]
            chans = np.flatnonzero(w > threshold)
            order = np.argsort(-w[chans], kind="stable")
            per_layer[layer] = [int(c) for c in chans[order]]
        out[j] = per_layer
    return out


def layer_distribution(relevant: Mapping[int, Mapping[str, Sequence[int]]]) -> dict[str, int]:
    """Number of relevant filters per layer, summed over classes (the paper's Fig. 3c).

    A filter relevant to several classes is counted once per class.

    Args:
      relevant: output of :func:`relevant_filters`.

    Returns:
      ``{layer: count}`` in the order layers first appear in ``relevant``.
    """
    counts: dict[str, int] = {}
    for per_layer in relevant.values():
        for layer, chans in per_layer.items():
            counts[layer] = counts.get(layer, 0) + len(chans)
    return counts


def has_relevant_filters(masks: Mapping[str, jax.Array], target: jax.Array) -> dict[str, jax.Array]:
    """Which images a layer can explain: their class has at least one relevant filter there.

    A class with no relevant filter in a layer gets an all-zero SVEBI heatmap from that layer
    (:func:`svebi_jax.heatmaps.svebi_heatmaps`): it is not an explanation, and an evaluation
    should say how many images it concerns (the *coverage*) instead of scoring it silently.
    Pure and jittable.

    Args:
      masks: ``{layer: [K, C_l]}`` float relevance masks (:attr:`Relevance.masks`).
      target: ``[B]`` int classes explained, in ``[0, K)`` (a class outside it, possible only
        when traced, has none).

    Returns:
      ``{layer: [B]}`` bool, ``True`` where ``masks[layer][target[b]]`` has a positive entry.

    Raises:
      ValueError: ``target`` not a 1-D int array, or a mask that is not ``[K, C]``.
    """
    target = jnp.asarray(target)
    if target.ndim != 1 or not jnp.issubdtype(target.dtype, jnp.integer):
        raise ValueError(f"target must be a [B] int array, got {target.dtype} {target.shape}")
    out = {}
    for layer, mask in masks.items():
        mask = jnp.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"masks[{layer!r}] must be [K, C], got shape {tuple(mask.shape)}")
        k = mask.shape[0]
        inside = (target >= 0) & (target < k)
        out[layer] = inside & jnp.any(mask[jnp.clip(target, 0, k - 1)] > 0, axis=-1)
    return out


def masks_from_weights(
    W, index: FilterIndex, *, threshold: float = 0.0, keep_weights: bool = False
) -> dict[str, jax.Array]:
    """Relevance masks straight from the lasso weights (pure, jittable, vmappable).

    .. math::
        \\text{mask}_\\ell[\\dots, j, c] = [\\,W[\\dots, \\text{col}_\\ell(c), j] > \\tau\\,]

    the 0/1 masks of the filters :func:`relevant_filters` lists, built without the detour
    through Python lists, so they can be built inside ``jit`` and for a whole μ path (or a
    batch of models) at once; :attr:`Relevance.masks` is this function of its weights. A NaN
    weight gives a NaN mask entry (the flag of a failed solve, e.g. a ``mu_lasso`` result
    under ``jit`` with invalid input), which makes the heatmaps that use it NaN instead of
    silently empty. With ``keep_weights=True`` the masks carry the lasso weights of the
    relevant filters instead of 1 (:math:`W[\\dots] \\cdot [W[\\dots] > \\tau]`), for
    lasso-weighted heatmaps.

    Args:
      W: ``[..., m, K]`` float lasso weights (``mu_lasso(...).W``; ``[P, m, K]`` for a path).
      index: :class:`~svebi_jax.responses.FilterIndex` of the ``m`` columns of ``X``.
      threshold: :math:`\\tau \\ge 0` (finite), as in :func:`relevant_filters`.
      keep_weights: keep the weights of relevant filters instead of 1.

    Returns:
      ``{layer: [..., K, C_l]}`` float32 masks for every layer of ``index``.

    Raises:
      ValueError: ``W`` not ``[..., m, K]`` with ``m = index.num_filters``, a bad
        ``threshold``, or (when concrete) ``W`` containing NaN/inf.
    """
    if not isinstance(index, FilterIndex):
        raise TypeError(f"index must be a FilterIndex, got {type(index).__name__}")
    threshold = V.check_number("threshold", threshold, low=0.0)
    shape = tuple(np.shape(W))
    if len(shape) < 2 or shape[-2] != index.num_filters:
        raise ValueError(
            f"W must be [..., m, K] with m = {index.num_filters} (index.num_filters), "
            f"got shape {shape}"
        )
    if V.all_finite(W) is False:
        raise ValueError("W contains NaN or inf values")
    W = jnp.asarray(W)
    masks = {}
    for layer in index.layers:
        w = jnp.swapaxes(W[..., index.columns(layer), :], -1, -2)  # [..., K, C_l]
        m = (w > threshold).astype(jnp.float32)
        if keep_weights:
            m = m * w.astype(jnp.float32)
        masks[layer] = jnp.where(jnp.isnan(w), jnp.nan, m)
    return masks


def fill_empty_from_path(
    masks: Mapping[str, jax.Array], mask_path: Mapping[str, jax.Array]
) -> dict[str, jax.Array]:
    """A class without relevant filters in a layer takes them from the smallest μ that has some.

    For each layer and class :math:`j` whose row ``masks[layer][j]`` has no positive entry,

    .. math::
        \\text{out}[j] = \\text{path}[p^*, j],\\qquad
        p^* = \\min\\{p : \\exists c,\\ \\text{path}[p, j, c] > 0\\}

    (``mask_path`` ordered by increasing μ); rows with relevant filters, and classes that
    have none anywhere on the path, are kept as they are. Pure and jittable.

    Args:
      masks: ``{layer: [K, C]}`` masks at the chosen μ (0/1 or weights).
      mask_path: ``{layer: [P, K, C]}`` masks along the μ path, increasing μ (e.g.
        ``masks_from_weights(W_path, index)``), for at least the layers of ``masks``.

    Returns:
      ``{layer: [K, C]}`` float32 masks.

    Raises:
      ValueError: a layer missing from ``mask_path`` or shapes that do not match.
    """
    out = {}
    for layer, m in masks.items():
        if layer not in mask_path:
            raise ValueError(f"mask_path: missing layer {layer!r}; has {tuple(mask_path)}")
        m = jnp.asarray(m, jnp.float32)
        path = jnp.asarray(mask_path[layer], jnp.float32)
        if path.ndim != 3 or path.shape[1:] != m.shape:
            raise ValueError(
                f"mask_path[{layer!r}] must be [P, {m.shape[0]}, {m.shape[1]}], got {path.shape}"
            )
        has = jnp.any(path > 0, axis=-1)  # [P, K]
        first = jnp.argmax(has, axis=0)  # [K] first μ with a relevant filter
        fallback = path[first, jnp.arange(m.shape[0])]  # [K, C]
        empty = ~jnp.any(m > 0, axis=-1) & ~jnp.any(jnp.isnan(m), axis=-1)
        out[layer] = jnp.where((empty & jnp.any(has, axis=0))[:, None], fallback, m)
    return out


# ----------------------------------------------------------------------------- Relevance

#: Format tag and version of :meth:`Relevance.save` files.
_FORMAT = "svebi_jax.Relevance"
_FORMAT_VERSION = 1
_LASSO_FIELDS = LassoResult._fields


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class Relevance:
    """The relevant filters of a trained network: μ-lasso weights with their filter index.

    Built by :func:`fit_relevance` (or :meth:`load`); immutable. Filter :math:`f` is relevant
    to class :math:`j` when :math:`W_{fj} > 0` (see the module docstring).

    **One μ** (scalar ``mu``): ``W`` is ``[m, C]``; :attr:`masks` is ``{layer: [C, c]}``,
    :attr:`filters` ``{class: {layer: [channels]}}``, :meth:`layer_distribution`
    ``{layer: count}`` and :meth:`attribution` the SVEBI attribution function.

    **A μ path** (1-D ``mu`` of length ``P``, e.g. for the ablation curve): ``W`` is
    ``[P, m, C]`` in the order of ``mu``; :attr:`masks` is ``{layer: [P, C, c]}`` (slice ``p``
    is the masks at ``mu[p]``), :attr:`filters` and :meth:`layer_distribution` are tuples of
    ``P`` per-μ results, and :meth:`at` selects one μ as a one-μ :class:`Relevance`
    (``rel.at(2.0).attribution()``). :meth:`attribution` of a path is refused (a map needs
    one μ), except as the fallback path of ``SVEBIOptions(empty_class="smallest_mu")``.

    Attributes:
      W: ``[m, C]`` (or ``[P, m, C]``) float lasso weights, read-only.
      index: :class:`~svebi_jax.responses.FilterIndex` of the ``m`` filters (rows of ``W``).
      mu: the budget :math:`\\mu` (float) or the path's ``[P]`` float64 values.
      lasso: the solver's :class:`~svebi_jax.lasso.LassoResult` diagnostics as NumPy arrays
        (``objective``, ``converged``, ``gap``, ...), or ``None``.
      input_shape: ``(H, W, C)`` of the images it was fitted on, or ``None``.
      apply_fn: the network it belongs to (not saved; :meth:`load` takes it again), used by
        :meth:`attribution`.
    """

    W: np.ndarray
    index: FilterIndex
    mu: float | np.ndarray
    lasso: LassoResult | None = None
    input_shape: tuple[int, ...] | None = None
    apply_fn: ApplyFn | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.index, FilterIndex):
            raise TypeError(f"index must be a FilterIndex, got {type(self.index).__name__}")
        W = np.asarray(self.W)
        if not np.issubdtype(W.dtype, np.floating):
            raise ValueError(f"W must be float lasso weights, got dtype {W.dtype}")
        mu = np.asarray(self.mu, dtype=np.float64)
        if mu.ndim > 1:
            raise ValueError(f"mu must be a number or a 1-D path, got shape {mu.shape}")
        want = 2 + mu.ndim
        if W.ndim != want or W.shape[-2] != self.index.num_filters:
            lead = "" if mu.ndim == 0 else f"P = {mu.shape[0]}, "
            raise ValueError(
                f"W must be [{lead}m, C] with m = {self.index.num_filters} (index.num_filters)"
                f"{' for a mu path' if mu.ndim else ''}, got shape {W.shape}"
            )
        if mu.ndim == 1 and W.shape[0] != mu.shape[0]:
            raise ValueError(f"W must have P = {mu.shape[0]} slices (len(mu)), got {W.shape}")
        if not np.all(np.isfinite(W)):
            raise ValueError("W contains NaN or inf values (a failed lasso solve)")
        object.__setattr__(self, "W", _readonly(W))
        object.__setattr__(self, "mu", float(mu) if mu.ndim == 0 else _readonly(mu))
        if self.lasso is not None:
            lasso = LassoResult(*(_readonly(np.asarray(v)) for v in self.lasso))
            object.__setattr__(self, "lasso", lasso)
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))

    # ------------------------------------------------------------------ views

    @property
    def num_classes(self) -> int:
        """``C``, the number of classes (columns of ``W``)."""
        return int(self.W.shape[-1])

    @property
    def is_path(self) -> bool:
        """Whether this holds a μ path (``W [P, m, C]``)."""
        return self.W.ndim == 3

    @functools.cached_property
    def masks(self) -> dict[str, jax.Array]:
        """``{layer: [C, c]}`` float32 0/1 relevance masks (``[P, C, c]`` for a path).

        ``masks[layer][j, c] = 1`` iff channel ``c`` of ``layer`` is relevant to class ``j``
        (:func:`masks_from_weights`).
        """
        return masks_from_weights(self.W, self.index)

    @functools.cached_property
    def weighted_masks(self) -> dict[str, jax.Array]:
        """Like :attr:`masks` with the lasso weights of the relevant filters instead of 1
        (``SVEBIOptions(filter_weighting="lasso")`` uses them)."""
        return masks_from_weights(self.W, self.index, keep_weights=True)

    @functools.cached_property
    def filters(self) -> Relevant | tuple[Relevant, ...]:
        """``{class: {layer: [channels]}}`` ranked by decreasing weight
        (:func:`relevant_filters`); for a path, a tuple of ``P`` of them in the order of
        ``mu``."""
        if self.is_path:
            return tuple(relevant_filters(w, self.index) for w in self.W)
        return relevant_filters(self.W, self.index)

    def layer_distribution(self) -> dict[str, int] | tuple[dict[str, int], ...]:
        """Relevant filters per layer summed over classes (:func:`layer_distribution`); for
        a path, a tuple of ``P`` of them."""
        if self.is_path:
            return tuple(layer_distribution(f) for f in self.filters)
        return layer_distribution(self.filters)

    def at(self, mu: float) -> Relevance:
        """The one-μ :class:`Relevance` at ``mu``, one of the path's values (``isclose``).

        Raises:
          ValueError: not a path, or ``mu`` not on it.
        """
        if not self.is_path:
            raise ValueError(f"at() selects one mu of a path; this Relevance has mu = {self.mu}")
        hit = np.flatnonzero(np.isclose(self.mu, float(mu), rtol=1e-6, atol=0.0))
        if hit.size == 0:
            raise ValueError(f"mu must be one of the path's values {self.mu.tolist()}, got {mu!r}")
        p = int(hit[0])
        lasso = None if self.lasso is None else LassoResult(*(v[p] for v in self.lasso))
        return dataclasses.replace(self, W=self.W[p], mu=float(self.mu[p]), lasso=lasso)

    def bind(self, apply_fn: ApplyFn, params: Any = None) -> Relevance:
        """This relevance attached to ``apply_fn`` (after :meth:`check`)."""
        self.check(apply_fn, params)
        return dataclasses.replace(self, apply_fn=apply_fn)

    # ------------------------------------------------------------------ the network

    def check(self, apply_fn: ApplyFn, params: Any = None) -> None:
        """Refuses a network whose conv layers, widths or classes differ from this one's.

        Uses ``apply_fn.info`` (:class:`~svebi_jax.protocols.ModelInfo`) when present, else
        an abstract forward pass (``jax.eval_shape``, no compute) with ``params`` on images
        of :attr:`input_shape`. Without either nothing can be compared and nothing is raised.

        Raises:
          ValueError: naming the layer, width or class count that differs.
        """
        found = _network_signature(apply_fn, params, self.input_shape)
        if found is None:
            return
        channels, num_classes = found
        for layer, c in zip(self.index.layers, self.index.channels, strict=True):
            if layer not in channels:
                raise ValueError(
                    f"apply_fn: this Relevance has conv layer {layer!r}, the network's conv "
                    f"layers are {tuple(channels)}; it was fitted for another network"
                )
            if channels[layer] is not None and channels[layer] != c:
                raise ValueError(
                    f"apply_fn: layer {layer!r} has {channels[layer]} channels in the network "
                    f"but {c} in this Relevance; it was fitted for another network"
                )
        if num_classes is not None and num_classes != self.num_classes:
            raise ValueError(
                f"apply_fn: the network has {num_classes} classes but this Relevance "
                f"{self.num_classes}; it was fitted for another network"
            )

    def attribution(
        self,
        layer: str = "combined",
        options: Any = None,
        *,
        apply_fn: ApplyFn | None = None,
        geometry: Mapping[str, Any] | None = None,
        path: Relevance | None = None,
    ):
        """The SVEBI attribution function of these relevant filters.

        The same function as :func:`svebi_jax.attribution.svebi` with :attr:`masks` (or
        :attr:`weighted_masks` when ``options.filter_weighting == "lasso"``).

        Args:
          layer: a conv layer of :attr:`index`, or ``"combined"`` (default: the fused map).
          options: :class:`~svebi_jax.attribution.SVEBIOptions`; default ``SVEBIOptions()``
            (the paper's).
          apply_fn: the network; default the one :func:`fit_relevance` / :meth:`load` /
            :meth:`bind` attached. Checked with :meth:`check`.
          geometry: ``{layer: Geometry}``; default ``apply_fn.info.geometry``.
          path: a μ-path :class:`Relevance` of the same filters, the fallback of
            ``options.empty_class="smallest_mu"``.

        Returns:
          ``attr_fn(params, images [B, H, W, C], target [B] | None) -> [B, H, W]``.

        Raises:
          ValueError: a path (select one μ with :meth:`at`), no ``apply_fn``, a network that
            does not match (:meth:`check`), or a ``path`` for other filters.
        """
        from svebi_jax import attribution as A

        options = A.SVEBIOptions() if options is None else options
        if not isinstance(options, A.SVEBIOptions):
            raise TypeError(f"options must be an SVEBIOptions, got {type(options).__name__}")
        if self.is_path:
            raise ValueError(
                f"attribution needs one mu; this Relevance is a path over mu = "
                f"{self.mu.tolist()}: select one with .at(mu)"
            )
        apply_fn = self.apply_fn if apply_fn is None else apply_fn
        if apply_fn is None:
            raise ValueError(
                "apply_fn is required: this Relevance is not attached to a network (pass "
                "apply_fn=, or Relevance.load(path, apply_fn=...))"
            )
        self.check(apply_fn)
        weighted = options.filter_weighting == "lasso"
        mask_path = None
        if options.empty_class == "smallest_mu":
            if path is None or not path.is_path or path.index != self.index:
                raise ValueError(
                    "path must be a mu-path Relevance of the same filters (fit_relevance with "
                    "a 1-D mu) for empty_class='smallest_mu'"
                )
            mask_path = path.weighted_masks if weighted else path.masks
        return A.svebi(
            apply_fn,
            self.weighted_masks if weighted else self.masks,
            layer=layer,
            geometry=geometry,
            options=options,
            mask_path=mask_path,
        )

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Writes this relevance to ``path``: one ``.npz`` (arrays) with a JSON header.

        The file holds ``W``, ``mu``, the lasso diagnostics and a JSON description (format
        version, layers, channels, classes, input shape); no pickle. The write is atomic
        (a temporary file renamed into place). The attached ``apply_fn`` is not saved.

        Returns:
          The path written (exactly ``path``; no suffix is added).
        """
        path = pathlib.Path(path)
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "layers": list(self.index.layers),
            "channels": list(self.index.channels),
            "num_classes": self.num_classes,
            "path": self.is_path,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "lasso": self.lasso is not None,
        }
        arrays = {"W": self.W, "mu": np.asarray(self.mu, np.float64)}
        if self.lasso is not None:
            for k, v in zip(_LASSO_FIELDS, self.lasso, strict=True):
                arrays[f"lasso_{k}"] = np.asarray(v)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
            os.replace(tmp, path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, apply_fn: ApplyFn | None = None, params: Any = None
    ) -> Relevance:
        """Reads a file of :meth:`save` (no pickle); with ``apply_fn``, checks and attaches it.

        Args:
          path: the file.
          apply_fn: the network to explain; refused when its conv layers, widths or classes
            differ (:meth:`check`, with ``params`` for a plain ``apply_fn`` without ``.info``).
          params: optional parameters for that check.

        Raises:
          ValueError: not a Relevance file, another format version, or another network.
        """
        path = pathlib.Path(path)
        not_ours = f"path: {str(path)!r} is not a svebi_jax Relevance file (Relevance.save)"
        try:
            with np.load(path, allow_pickle=False) as f:
                if "meta" not in f.files or "W" not in f.files:
                    raise ValueError(not_ours)
                meta = json.loads(bytes(f["meta"]).decode())
                arrays = {k: f[k] for k in f.files if k != "meta"}
        except (ValueError, OSError, zipfile.BadZipFile, UnicodeDecodeError) as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise ValueError(not_ours) from err
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ValueError(not_ours)
        if meta.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"path: {str(path)!r} has Relevance format version {meta.get('version')}, "
                f"this svebi_jax reads version {_FORMAT_VERSION}"
            )
        lasso = None
        if meta["lasso"]:
            lasso = LassoResult(*(arrays[f"lasso_{k}"] for k in _LASSO_FIELDS))
        mu = arrays["mu"]
        rel = cls(
            W=arrays["W"],
            index=FilterIndex(tuple(meta["layers"]), tuple(meta["channels"])),
            mu=mu if meta["path"] else float(mu),
            lasso=lasso,
            input_shape=meta["input_shape"],
        )
        return rel if apply_fn is None else rel.bind(apply_fn, params)


def _network_signature(apply_fn, params, input_shape):
    """``({conv layer: channels | None}, num_classes | None)`` of a network, or ``None``."""
    info = model_info(apply_fn)
    if info is not None:
        channels = {}
        for n in info.conv_layers:
            geo = info.geometry.get(n)
            channels[n] = None if geo is None else int(geo.channels)
        return channels, int(info.num_classes)
    if params is None or input_shape is None:
        return None
    out = jax.eval_shape(
        lambda p, x: apply_fn(p, x, record="mean"),
        params,
        jax.ShapeDtypeStruct((1, *input_shape), jnp.float32),
    )
    return {n: int(s.shape[-1]) for n, s in out.spikes.items()}, int(out.logits.shape[-1])


def _images_of(data):
    """``data`` without unused labels: ``(images, labels)`` arrays become ``images``."""
    if (
        isinstance(data, tuple)
        and len(data) == 2
        and np.ndim(data[0]) in (4, 5)
        and (data[1] is None or np.ndim(data[1]) == 1)
    ):
        return data[0]
    return data


def fit_relevance(
    apply_fn: ApplyFn,
    params: Any,
    data: Any,
    mu: float | Sequence[float] = 2.0,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int | None = None,
    mesh: Any = None,
    method: str | None = None,
) -> Relevance:
    """The relevant filters of a trained network, from its training data, in one call.

    Runs the three steps of SVEBI's filter selection: the responses
    :math:`X \\in \\mathbb{R}^{N \\times m}` of every conv filter to every image and the
    one-hot *predicted* classes :math:`L` (:func:`~svebi_jax.responses.compute_responses`),
    then per class

    .. math::
        w_j = \\operatorname*{argmin}_{w \\ge 0,\\ \\mathbf 1^\\top w \\le \\mu}
            \\lVert X w - L_{:, j} \\rVert_2^2

    (:func:`~svebi_jax.lasso.mu_lasso`), and keeps ``W = [w_1 … w_C]`` with its filter index.
    Labels in ``data`` are not used: SVEBI explains what the network predicts.

    Args:
      apply_fn: the trained model (:class:`~svebi_jax.protocols.ApplyFn`).
      params: its parameters.
      data: the images: an ``[N, H, W, C]`` float array, an ``(images, labels)`` pair, a
        :class:`svebi_jax.data.Dataset`, an iterable of ``(images, labels)`` batches or an
        image source (whatever :func:`~svebi_jax.responses.compute_responses` streams), or
        precomputed :class:`~svebi_jax.responses.Responses` (then the network is not run).
      mu: the L1 budget :math:`\\mu > 0` (default 2, the paper's), or a 1-D sequence of
        budgets (a μ path: the result holds ``W [P, m, C]``, see :class:`Relevance`).
      layers: conv layers to consider, in column order; default all.
      batch_size: images per compiled forward pass; default ``compute_responses``'s (256).
      mesh: optional :class:`jax.sharding.Mesh` for a data-parallel forward pass.
      method: the lasso solver (:func:`~svebi_jax.lasso.mu_lasso`'s ``method``); default
        ``mu_lasso``'s default.

    Returns:
      :class:`Relevance` attached to ``apply_fn``.

    Raises:
      ValueError: empty ``data`` (naming the images), bad images, ``mu``, ``layers`` or
        ``batch_size`` (before any forward pass where the value allows).
    """
    if isinstance(data, Responses):
        resp = data
        if layers is not None and tuple(layers) != resp.index.layers:
            raise ValueError(
                f"layers: the given Responses hold layers {resp.index.layers}, got {tuple(layers)}"
            )
        input_shape = None
    else:
        data = _images_of(data)
        kw = {} if batch_size is None else {"batch_size": batch_size}
        resp = compute_responses(apply_fn, params, data, layers=layers, mesh=mesh, **kw)
        images = getattr(data, "images", data)
        shape = getattr(images, "shape", None)
        input_shape = tuple(int(v) for v in shape[-3:]) if shape is not None else None
    if input_shape is None:
        info = model_info(apply_fn)
        input_shape = None if info is None else tuple(info.input_shape)
    kw = {} if method is None else {"method": method}
    sol = mu_lasso(resp.X, resp.L, mu, **kw)
    lasso = LassoResult(*(np.asarray(v) for v in sol))
    mu_arr = np.asarray(mu, dtype=np.float64)
    return Relevance(
        W=np.asarray(sol.W),
        index=resp.index,
        mu=float(mu_arr) if mu_arr.ndim == 0 else mu_arr,
        lasso=lasso,
        input_shape=input_shape,
        apply_fn=apply_fn,
    )
