"""Training of spiking networks with optax over the functional model API.

The model is used through :func:`svebi_jax.models.functional`: ``apply_fn(params, images)``
returns an :class:`~svebi_jax.layers.SNNOutput` and ``params`` is an ``nnx.State`` pytree,
which optax transforms like any other pytree. A training step is one pure, jitted function

.. math::
    \\mathcal{L}(\\theta) = \\frac{1}{B}\\sum_{b=1}^{B}
    -\\log \\operatorname{softmax}(z_b(\\theta))_{y_b},
    \\qquad z_b = \\frac{1}{T}\\sum_{t=1}^{T} I^{\\text{out}}_b[t]

(cross-entropy on the integrator readout logits), differentiated through the LIF surrogate
gradients and applied with Adam/AdamW or SGD with momentum.

Defaults (:class:`TrainConfig`) were chosen on a 4,000/1,000 train/validation split of the
5,000 ``mnist-5k`` digits (``split(..., 0.2, seed=1234)``) for the shallow SNN (``T = 10``,
``β = 0.95``, subtract reset, triangle surrogate), 10 epochs unless noted; validation
accuracy (1,000 digits, so about ±0.4 % run-to-run noise):

============================================  ==========
Adam 2e-3, cosine, shift ±2                   98.0 %
Adam 2e-3, cosine, no augmentation            97.5 %
Adam 1e-3, cosine, shift ±2                   97.6 %
Adam 4e-3, cosine, shift ±2 (3 runs)          98.3 / 98.5 / 99.0 %
Adam 4e-3, cosine, shift ±1 (**default**)     98.8 %
Adam 4e-3, cosine, shift ±2, 15 epochs        99.1 %
Adam 8e-3, cosine, shift ±1 / ±2              98.4 / 98.6 %
Adam 8e-3, cosine, shift ±1, 6 epochs         98.0 %
Adam 1.6e-2, cosine, shift ±1                 98.2 %
Adam 2e-3, shift ±2, 6 epochs                 97.1 %
Adam 2e-3, shift ±2, β = 0.5                  97.8 %
Adam 4e-3, shift ±2, β = 0.8                  98.4 %
SGD 0.1 momentum 0.9, cosine, shift ±1        97.4 %
============================================  ==========

Adam with a peak rate of 4e-3 (half-epoch linear warm-up, cosine decay to 0), random ±1 px
translations and 10 epochs of batch 100 is the cheapest setting in the top group; larger
rates or fewer epochs lose accuracy, augmentation is worth ~0.5 %, and the LIF settings of
the paper (``β = 0.95``) were kept since other ``β`` did not help. Trained on all 5,000
digits with these defaults (seed 0) the network reaches **98.43 %** on the real MNIST test
set (10,000 digits) in 10 epochs of about 15-20 s each on 2 CPU cores.

Usage::

    from flax import nnx
    from svebi_jax import data, train
    from svebi_jax.models import ShallowSNN

    cfg = train.TrainConfig()
    model = ShallowSNN(rngs=nnx.Rngs(cfg.seed), config=cfg.snn)
    params, history = train.fit(model, data.load("mnist-5k"), config=cfg)

Run ``svebi train --help`` (or ``python -m svebi_jax train --help``) for the command line.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from svebi_jax import _validation as V
from svebi_jax import batching
from svebi_jax import layers as L
from svebi_jax.protocols import ApplyFn

Array = jax.Array
TrainStep = Callable[[Any, Any, Array, Array], tuple[Any, Any, Array, Array]]

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
SCHEDULES: tuple[str, ...] = ("constant", "cosine")
MODELS: tuple[str, ...] = ("shallow",)


def _default_snn() -> L.SNNConfig:
    return L.SNNConfig(num_steps=10)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (frozen, JSON-able through :meth:`to_dict` / :meth:`from_dict`).

    The defaults train the shallow SNN (``T = 10``) on the 5,000 ``mnist-5k`` digits to
    98.4 % accuracy on the real MNIST test set (≥ 97.5 % is tested; see the module docstring
    for how they were chosen).

    Attributes:
      seed: seed of the parameter initialization (used by callers that build the model, e.g.
        the CLI), the epoch shuffles (``seed + epoch``) and the augmentation keys.
      epochs: number of passes over the training set.
      batch_size: ``B``, examples per step (the last partial batch of an epoch is dropped,
        so there is a single compiled shape; the shuffle changes every epoch).
      optimizer: ``"adam"`` (AdamW, i.e. decoupled weight decay, when ``weight_decay > 0``)
        or ``"sgd"`` (heavy-ball momentum ``momentum``; ``weight_decay`` is added to the
        gradient as an L2 term).
      learning_rate: peak learning rate.
      schedule: ``"cosine"`` (linear warm-up for ``warmup_epochs``, then cosine decay to
        zero at the end of training) or ``"constant"``.
      warmup_epochs: length of the linear warm-up in epochs (may be fractional).
      weight_decay: decoupled weight decay (0 disables it).
      momentum: momentum of ``"sgd"``.
      grad_clip: global-norm gradient clipping threshold (0 disables it).
      augment_shift: maximum random translation in pixels (per image, uniform in
        ``[-s, s]`` on both axes, zero fill) applied to training batches; 0 disables it.
      eval_batch_size: batch size of :func:`evaluate` inside :func:`fit`.
      model: model family, one of :data:`MODELS` (recorded in checkpoints).
      snn: the network's :class:`~svebi_jax.layers.SNNConfig`.
    """

    seed: int = 0
    epochs: int = 10
    batch_size: int = 100
    optimizer: str = "adam"
    learning_rate: float = 4e-3
    schedule: str = "cosine"
    warmup_epochs: float = 0.5
    weight_decay: float = 0.0
    momentum: float = 0.9
    grad_clip: float = 0.0
    augment_shift: int = 1
    eval_batch_size: int = 500
    model: str = "shallow"
    snn: L.SNNConfig = dataclasses.field(default_factory=_default_snn)

    def __post_init__(self):
        if isinstance(self.snn, Mapping):
            object.__setattr__(self, "snn", L.SNNConfig(**self.snn))
        if not isinstance(self.snn, L.SNNConfig):
            raise TypeError(f"snn must be an SNNConfig or a dict, got {type(self.snn).__name__}")
        for name in ("seed", "augment_shift"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(
                f"learning_rate must be a finite positive number, got {self.learning_rate!r}"
            )
        for name in ("weight_decay", "grad_clip", "warmup_epochs"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the nested ``snn`` config as a dict)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise ValueError(
                f"TrainConfig: unknown keys {extra}; expected a subset of {sorted(known)}"
            )
        d = dict(d)
        if "snn" in d and isinstance(d["snn"], Mapping):
            d["snn"] = L.SNNConfig(**d["snn"])
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


#: The paper's training recipe for the shallow MNIST SNN: 5 epochs, batch 100, learning rate
#: 0.3, ``T = 10``. The paper does not name the optimizer; we infer **plain SGD** (constant
#: rate, no momentum, no augmentation): 0.3 is a usual step for SGD on a small network and
#: an impossible one for Adam (whose steps are ~lr in every coordinate, so 0.3 throws the
#: weights far out of range in one step), and momentum 0.9 would make the effective step 3.
#: On a 4,000/1,000 split of ``mnist-5k`` it reaches 93.2 % validation / 93.5 % real-test
#: accuracy (seed 0), below the default's ~98 %: the recipe needs the paper's 60,000 digits.
PAPER_RECIPE = TrainConfig(
    epochs=5,
    batch_size=100,
    optimizer="sgd",
    learning_rate=0.3,
    momentum=0.0,
    schedule="constant",
    warmup_epochs=0.0,
    augment_shift=0,
)

#: Named training recipes: ``"default"`` (:class:`TrainConfig`) and ``"paper"``
#: (:data:`PAPER_RECIPE`).
RECIPES: dict[str, TrainConfig] = {"default": TrainConfig(), "paper": PAPER_RECIPE}


def recipe(name: str, **changes) -> TrainConfig:
    """The named recipe of :data:`RECIPES` with ``changes`` applied (e.g. ``seed=1``)."""
    V.check_choice("name", name, tuple(RECIPES))
    return RECIPES[name].replace(**changes)


# ----------------------------------------------------------------------------- optimizer


def make_schedule(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule | float:
    """The learning rate as a function of the optimizer step ``k`` (or a constant).

    For ``schedule="cosine"``, with :math:`W` warm-up steps, :math:`K` total steps and peak
    rate :math:`\\eta`:

    .. math::
        \\eta_k = \\eta \\frac{k}{W} \\ (k < W), \\qquad
        \\eta_k = \\frac{\\eta}{2}\\left(1 + \\cos\\frac{\\pi (k - W)}{K - W}\\right)
        \\ (W \\le k \\le K)

    Args:
      config: :class:`TrainConfig`.
      steps_per_epoch: optimizer steps per epoch (``K = epochs · steps_per_epoch``).

    Returns:
      An ``optax`` schedule, or ``config.learning_rate`` for ``"constant"``.
    """
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int):
        raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
    if config.schedule == "constant":
        return config.learning_rate
    total = config.epochs * steps_per_epoch
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=warmup,
        decay_steps=total,
        end_value=0.0,
    )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """Builds the optax optimizer (with its learning-rate schedule) described by ``config``.

    Args:
      config: :class:`TrainConfig`.
      steps_per_epoch: optimizer steps per epoch (sets the schedule's length).

    Returns:
      An ``optax.GradientTransformation``.
    """
    lr = make_schedule(config, steps_per_epoch)
    chain = []
    if config.grad_clip > 0:
        chain.append(optax.clip_by_global_norm(config.grad_clip))
    if config.optimizer == "adam":
        if config.weight_decay > 0:
            chain.append(optax.adamw(lr, weight_decay=config.weight_decay))
        else:
            chain.append(optax.adam(lr))
    else:
        if config.weight_decay > 0:
            chain.append(optax.add_decayed_weights(config.weight_decay))
        chain.append(optax.sgd(lr, momentum=config.momentum))
    return chain[0] if len(chain) == 1 else optax.chain(*chain)


# ----------------------------------------------------------------------------- steps


def loss_fn(
    params, apply_fn: ApplyFn, images: Array, labels: Array, mask: Array | None = None
) -> tuple[Array, Array]:
    """Mean softmax cross-entropy of the readout logits.

    .. math::
        \\mathcal{L} = -\\frac{1}{B}\\sum_b \\log \\frac{e^{z_{b,y_b}}}{\\sum_k e^{z_{b,k}}}
        \\qquad \\Big(\\text{with a mask: }
        \\frac{\\sum_b m_b \\ell_b}{\\max(1, \\sum_b m_b)}\\Big)

    Args:
      params: the model's parameter pytree (``nnx.State``).
      apply_fn: ``apply_fn(params, images) -> SNNOutput``.
      images: ``[B, H, W, C]`` float32 images in ``[0, 1]`` (or time-major ``[T, B, H, W, C]``).
      labels: ``[B]`` int32 class indices.
      mask: optional ``[B]`` bool/0-1 weights: rows with 0 (a stream's padding or unreadable
        files) do not count. ``None``: every row counts (the plain mean).

    Returns:
      ``(loss, logits)``: scalar float32 mean loss and ``[B, K]`` float32 logits.
    """
    logits = apply_fn(params, images).logits
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return _masked_mean(losses, mask), logits


def _masked_mean(values: Array, mask: Array | None) -> Array:
    if mask is None:
        return values.mean()
    w = jnp.asarray(mask, jnp.float32)
    return jnp.sum(values * w) / jnp.maximum(1.0, jnp.sum(w))


def _train_step(params, opt_state, images, labels, mask=None, *, apply_fn, optimizer):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, apply_fn, images, labels, mask
    )
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    accuracy = _masked_mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32), mask)
    return params, opt_state, loss, accuracy


def make_train_step(
    apply_fn: ApplyFn,
    optimizer: optax.GradientTransformation,
    *,
    jit: bool = True,
    mesh: Any = None,
) -> TrainStep:
    """Returns the training step ``(params, opt_state, images, labels) -> (params, opt_state,
    loss, accuracy)``.

    The step is pure: one forward/backward pass of :func:`loss_fn` and one optimizer update.
    When jitted, ``params`` and ``opt_state`` are *donated* (their buffers are reused for the
    outputs), so the arrays passed in must not be used again by the caller (:func:`fit` copies
    the initial parameters first).

    Args:
      apply_fn: ``apply_fn(params, images) -> SNNOutput``.
      optimizer: optax transformation (e.g. from :func:`make_optimizer`).
      jit: compile with ``jax.jit`` (``False`` gives the same function run eagerly).
      mesh: optional :class:`jax.sharding.Mesh` (:func:`svebi_jax.sharding.make_mesh`): the
        step is jitted with ``in_shardings`` = (replicated, replicated, batch-sharded,
        batch-sharded) and replicated outputs, so every device differentiates its ``B/D``
        rows and the gradients are all-reduced (data parallelism; ``B`` must be a multiple
        of the mesh's ``D`` devices). ``None`` (default): one device.

    Returns:
      The step function ``(params, opt_state, images, labels, mask=None)``. Its ``images``
      are ``[B, H, W, C]`` float32, ``labels`` ``[B]`` int32, the optional ``mask`` ``[B]``
      (rows that count, see :func:`loss_fn`); ``loss`` and ``accuracy`` are float32 scalars
      of the batch *before* the update.
    """

    def step(params, opt_state, images, labels, mask=None):
        return _train_step(
            params, opt_state, images, labels, mask, apply_fn=apply_fn, optimizer=optimizer
        )

    if not jit:
        return step
    if mesh is None:
        return jax.jit(step, donate_argnums=(0, 1))
    from svebi_jax import sharding as S

    rep, bat = S.replicated_sharding(S.check_mesh(mesh)), S.batch_sharding(mesh)
    sharded = jax.jit(
        step,
        in_shardings=(rep, rep, bat, bat, bat),
        out_shardings=(rep, rep, rep, rep),
        donate_argnums=(0, 1),
    )

    def sharded_step(params, opt_state, images, labels, mask=None):
        return sharded(params, opt_state, images, labels, mask)

    return sharded_step


def _eval_step(params, images, labels, mask, *, apply_fn):
    logits = apply_fn(params, images).logits
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return jnp.sum(correct * mask), jnp.sum(losses * mask)


def make_eval_step(apply_fn: ApplyFn) -> Callable:
    """Jitted ``(params, images [B,...], labels [B], mask [B]) -> (num_correct, sum_loss)``.

    ``mask`` is ``[B]`` float32 (1 for real examples, 0 for padding); both outputs are float32
    scalars summed over the unmasked examples.
    """

    def step(params, images, labels, mask):
        return _eval_step(params, images, labels, mask, apply_fn=apply_fn)

    return jax.jit(step)


def evaluate(
    apply_fn: ApplyFn,
    params,
    dataset,
    batch_size: int = 500,
    *,
    eval_step: Callable | None = None,
) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of a model on a dataset.

    Every batch has exactly ``batch_size`` examples (the last one is zero-padded and the
    padding masked out), so the jitted evaluation step is compiled once.

    Args:
      apply_fn: ``apply_fn(params, images) -> SNNOutput``.
      params: the parameter pytree.
      dataset: a :class:`svebi_jax.data.Dataset` (images ``[N, H, W, C]`` float32, labels
        ``[N]`` int32), any object with ``images``/``labels`` arrays, or an iterable of
        ``(images, labels)`` batches (:mod:`svebi_jax.batching`).
      batch_size: examples per compiled batch.
      eval_step: a step from :func:`make_eval_step` to reuse (avoids recompiling across
        calls); built from ``apply_fn`` when omitted.

    Returns:
      ``(accuracy, mean_loss)`` as Python floats.

    Raises:
      ValueError: a bad ``batch_size``, an empty dataset, images that are not finite floats,
        or labels outside the model's ``[0, K)`` classes (which would score as wrong answers
        and a NaN loss instead of an error).
    """
    batch_size = V.check_positive_int("batch_size", batch_size)
    in_memory = hasattr(dataset, "images") and hasattr(dataset, "labels")
    num_classes = None
    if in_memory:  # check everything before any work
        images, labels = _images_and_labels(dataset, "dataset")
        if labels.shape[0] < 1:
            raise ValueError("dataset must hold at least one example, got 0")
        num_classes = _num_classes(apply_fn, params, images)
        V.check_labels(labels, num_classes=num_classes, name="dataset labels")
        batch_size = min(batch_size, int(labels.shape[0]))
    step = eval_step or make_eval_step(apply_fn)
    correct = jnp.zeros((), jnp.float32)
    total_loss = jnp.zeros((), jnp.float32)
    n = 0
    for batch in batching.iter_batches(dataset, batch_size, name="dataset images"):
        if batch.labels is None:
            raise ValueError("dataset: evaluation needs labels; the batches carry none")
        if num_classes is None:
            num_classes = _num_classes(apply_fn, params, batch.images)
        V.check_labels(batch.labels[: batch.count], num_classes=num_classes, name="dataset labels")
        m = (np.arange(batch_size) < batch.count).astype(np.float32)
        c, s = step(params, batch.images, batch.labels, m)
        correct = correct + c
        total_loss = total_loss + s
        n += batch.count
    return float(correct) / n, float(total_loss) / n


def _images_and_labels(dataset, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not (hasattr(dataset, "images") and hasattr(dataset, "labels")):
        raise TypeError(
            f"{name} must have images [N, H, W, C] and labels [N] (e.g. a "
            f"svebi_jax.data.Dataset), got {type(dataset).__name__}"
        )
    images = V.check_images(np.asarray(dataset.images), name=f"{name} images")
    labels = V.check_labels(np.asarray(dataset.labels), n=images.shape[0], name=f"{name} labels")
    return images, labels


def _num_classes(apply_fn: ApplyFn, params, images: np.ndarray) -> int:
    """``K`` from the logits of one abstract forward pass (no compute)."""
    abstract = jax.ShapeDtypeStruct((1,) + images.shape[1:], images.dtype)
    out = jax.eval_shape(lambda p, x: apply_fn(p, x), params, abstract)
    return int(out.logits.shape[-1])


# ----------------------------------------------------------------------------- augmentation


def _shift_batch(key: Array, images: Array, max_shift: int) -> Array:
    b, h, w, _ = images.shape
    s = max_shift
    padded = jnp.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * s + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


_shift_batch_jit = jax.jit(_shift_batch, static_argnames="max_shift")


def _shift_rows(key: Array, images: Array, max_shift: int, first: int, total: int) -> Array:
    """:func:`_shift_batch` of rows ``[first, first + b)`` of a ``total``-row batch."""
    b, h, w, _ = images.shape
    s = max_shift
    padded = jnp.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))
    offsets = jax.random.randint(key, (total, 2), 0, 2 * s + 1)[first : first + b]

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


_shift_rows_jit = jax.jit(_shift_rows, static_argnames=("max_shift", "first", "total"))


def _shift_host_rows(key: Array, images, max_shift: int, index: int, count: int) -> Array:
    """Host ``index`` of ``count``'s rows of a global batch, shifted as the global batch is
    (:func:`random_shift` of the ``count · b`` rows, rows ``[index · b, (index + 1) · b)``)."""
    b = int(np.shape(images)[0])
    return _shift_rows_jit(
        key, jnp.asarray(images), max_shift=max_shift, first=index * b, total=count * b
    )


def random_shift(key: Array, images: Array, max_shift: int) -> Array:
    """Translates every image by its own random integer offset (zero fill).

    Image ``b`` is shifted by :math:`(\\delta_y, \\delta_x) \\sim \\mathcal{U}\\{-s, …, s\\}^2`:

    .. math::
        y_{b,i,j,c} = x_{b,\\,i-\\delta_y,\\,j-\\delta_x,\\,c}
        \\quad (0 \\text{ outside the image})

    implemented as one pad plus a vmapped ``dynamic_slice`` (no loop over images).

    Args:
      key: PRNG key.
      images: ``[B, H, W, C]`` float images.
      max_shift: :math:`s \\ge 0` in pixels (static).

    Returns:
      ``[B, H, W, C]`` shifted images (same dtype).
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative int, got {max_shift!r}")
    if max_shift == 0:
        return jnp.asarray(images)
    return _shift_batch_jit(key, jnp.asarray(images), max_shift=max_shift)


# ----------------------------------------------------------------------------- fit


def _history_template() -> dict[str, list]:
    return {
        "train_loss": [],
        "train_accuracy": [],
        "eval_loss": [],
        "eval_accuracy": [],
        "seconds": [],
    }


def fit(
    model_or_fn,
    train_ds,
    *,
    config: TrainConfig | None = None,
    eval_ds=None,
    progress: bool = True,
    eval_every: int = 1,
    mesh: Any = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int = 500,
    on_checkpoint: Callable[[int], None] | None = None,
    num_workers: int = 0,
) -> tuple[Any, dict[str, list]]:
    """Trains a spiking network with minibatch gradient descent.

    For each epoch ``e`` the training set is shuffled with
    ``svebi_jax.data.batches(train_ds, B, seed=config.seed + e, drop_remainder=True)``; each
    batch is (optionally) randomly shifted with a key derived from ``config.seed`` and the
    step index and passed to the jitted :func:`make_train_step`. The same ``config`` and
    initial parameters give bit-identical results on the same machine.

    **Resumable.** With ``checkpoint_dir``, the parameters, optimizer state and progress are
    saved with orbax (:class:`svebi_jax.resume.TrainCheckpoints`) every ``checkpoint_every``
    steps and after the last step. Calling :func:`fit` again with the same directory and
    config resumes from the newest saved step and returns the same parameters, bit for bit,
    as an uninterrupted run (the batch order and augmentation keys are functions of the step
    index; the skipped batches are not recomputed). A finished run returns its final state
    without training. The epoch ``seconds`` of a resumed epoch count only its resumed part.

    Args:
      model_or_fn: a :class:`~svebi_jax.models.SpikingNetwork` (its parameters are the
        starting point; the module itself is not modified — use
        ``nnx.update(model, params)`` to load the result) or an ``(apply_fn, params)`` pair.
      train_ds: training :class:`~svebi_jax.data.Dataset` with ``N >= batch_size`` examples,
        or a streaming :class:`~svebi_jax.data.stream.ImageSource` (read batch by batch,
        shuffled with ``seed + epoch``, this host's rows only; rows it marks unreadable are
        left out of the loss through the step's ``mask``; on resume it starts at the saved
        step without reading the skipped batches).
      config: :class:`TrainConfig` (default ``TrainConfig()``).
      eval_ds: optional dataset evaluated (with :func:`evaluate`) after every
        ``eval_every``-th epoch and after the last one.
      progress: show a ``tqdm`` progress bar.
      eval_every: evaluate every this many epochs (the last epoch is always evaluated).
      mesh: optional :class:`jax.sharding.Mesh` (:func:`svebi_jax.sharding.make_mesh`): data
        parallel training, batch sharded over the devices, parameters replicated
        (``config.batch_size`` must be a multiple of the number of devices). The result
        equals one-device training to float tolerance (gradient sums are all-reduced in
        another order). With several processes (``jax.distributed.initialize()``) the mesh
        is required: every host holds an in-memory ``train_ds`` whole (a stream is read
        per host) and contributes its own rows of each global batch
        (:func:`svebi_jax.sharding.shard_batch`); the augmentation offsets are those of the
        global batch, so the steps equal one process's on the same global batches, and every
        process gets the trained parameters back.
      checkpoint_dir: directory of the orbax checkpoints (``None``: no checkpoints).
      checkpoint_every: save every this many optimizer steps (and after the last one).
      on_checkpoint: called as ``on_checkpoint(step)`` after each save (e.g. to log; an
        exception raised there stops training with the checkpoint already on disk).
      num_workers: decoding processes of a streaming ``train_ds`` (its ``batches``'
        ``num_workers``; ``0``: decode in this process). Ignored for an in-memory set.

    Returns:
      ``(params, history)``: the trained parameter pytree and a dict of per-epoch lists
      ``train_loss``, ``train_accuracy`` (means over the epoch's batches, measured before
      each update, on augmented images), ``eval_loss``, ``eval_accuracy`` (``None`` for
      epochs that were not evaluated or without ``eval_ds``) and ``seconds`` (wall time of
      the epoch's training steps, evaluation excluded).

    Raises:
      ValueError: bad arguments; a ``checkpoint_dir`` written with another config (the
        differing keys are named), for a model with another class count, or with state
        arrays that do not fit the model.
    """
    from svebi_jax import sharding as S

    config = config or TrainConfig()
    mesh = _check_fit_args(config, eval_every, mesh, num_workers)
    apply_fn, params = _model_and_params(model_or_fn)
    plan = _plan(train_ds, eval_ds, apply_fn, params, config, mesh)
    optimizer = make_optimizer(config, plan.steps_per_epoch)
    # The jitted step donates its inputs: copy so the caller's arrays stay valid.
    params = jax.tree.map(jnp.array, params)
    opt_state = optimizer.init(params)
    if mesh is not None:
        params, opt_state = S.replicate(mesh, (params, opt_state))
    run = _Run(params=params, opt_state=opt_state)
    ckpt = None
    if checkpoint_dir is not None:
        from svebi_jax.resume import TrainCheckpoints

        ckpt = TrainCheckpoints(checkpoint_dir, every=checkpoint_every)
        _resume(ckpt, run, config, plan.num_classes)
    loop = _Loop(
        plan=plan,
        config=config,
        step_fn=make_train_step(apply_fn, optimizer, mesh=mesh),
        mesh=mesh,
        ckpt=ckpt,
        on_checkpoint=on_checkpoint,
        num_workers=num_workers,
    )
    evaluator = _Evaluator(apply_fn, eval_ds, config, eval_every) if eval_ds is not None else None
    bar = _progress_bar(progress, plan.total_steps, run.step)
    try:
        for epoch in range(run.step // plan.steps_per_epoch, config.epochs):
            loop.epoch(run, train_ds, epoch, bar)
            last = epoch == config.epochs - 1
            ev_acc, ev_loss = (None, None) if evaluator is None else evaluator(run, epoch)
            run.end_epoch(ev_loss, ev_acc)
            loop.save(run, force=last)
            if bar is not None:
                post = {"epoch": epoch + 1, "loss": f"{run.history['train_loss'][-1]:.4f}"}
                if ev_acc is not None:
                    post["eval_acc"] = f"{ev_acc:.4f}"
                bar.set_postfix(post)
    finally:
        if bar is not None:
            bar.close()
        if ckpt is not None:
            ckpt.close()
    return _returned_params(run.params), run.history


def _check_fit_args(config, eval_every, mesh, num_workers):
    """The checked ``mesh`` (refused arguments raise before any work)."""
    from svebi_jax import sharding as S

    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive int, got {eval_every!r}")
    mesh = S.check_mesh(mesh)
    V.check_nonnegative_int("num_workers", num_workers)
    if mesh is None and jax.process_count() > 1:
        raise ValueError(
            f"mesh must be given when JAX runs {jax.process_count()} processes "
            "(jax.distributed.initialize): pass mesh=svebi_jax.sharding.make_mesh() so the "
            "processes train one model together"
        )
    if mesh is not None and config.batch_size % S.num_shards(mesh):
        raise ValueError(
            f"config.batch_size must be a multiple of the mesh's {S.num_shards(mesh)} devices "
            f"for data-parallel training, got {config.batch_size}"
        )
    return mesh


def _model_and_params(model_or_fn):
    """``(apply_fn, params)`` of a ``SpikingNetwork`` or an ``(apply_fn, params)`` pair."""
    from svebi_jax.models import SpikingNetwork, functional

    if isinstance(model_or_fn, SpikingNetwork):
        return functional(model_or_fn)
    if isinstance(model_or_fn, tuple) and len(model_or_fn) == 2 and callable(model_or_fn[0]):
        return model_or_fn
    raise TypeError(
        "model_or_fn must be a SpikingNetwork or an (apply_fn, params) pair, "
        f"got {type(model_or_fn).__name__}"
    )


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a training run reads: its data's kind and size, and its step counts."""

    in_memory: bool
    num_classes: int
    steps_per_epoch: int
    total_steps: int
    hosts: tuple[int, int]  # (jax.process_index(), jax.process_count())


def _plan(train_ds, eval_ds, apply_fn, params, config: TrainConfig, mesh) -> _Plan:
    """Checks the data against the model and counts the steps (before any work)."""
    in_memory = hasattr(train_ds, "images") and hasattr(train_ds, "labels")
    hosts = (jax.process_index(), jax.process_count())
    if in_memory:
        images, labels = _images_and_labels(train_ds, "train_ds")
        num_classes = _num_classes(apply_fn, params, images)
        V.check_labels(labels, num_classes=num_classes, name="train_ds labels")
        n = len(labels)
    else:
        num_classes, n = _check_stream(train_ds, apply_fn, params, config.batch_size, hosts[1])
    if eval_ds is not None:
        ev_images, ev_labels = _images_and_labels(eval_ds, "eval_ds")
        V.check_labels(
            ev_labels, num_classes=_num_classes(apply_fn, params, ev_images), name="eval_ds labels"
        )
    if n < config.batch_size:
        raise ValueError(
            f"train_ds must hold at least batch_size={config.batch_size} examples, got {n}"
        )
    steps_per_epoch = (
        n // config.batch_size
        if in_memory
        else train_ds.num_batches(config.batch_size // hosts[1], drop_remainder=True)
    )
    return _Plan(in_memory, num_classes, steps_per_epoch, config.epochs * steps_per_epoch, hosts)


@dataclasses.dataclass
class _Run:
    """The state of a training run: parameters, optimizer state, step and history."""

    params: Any
    opt_state: Any
    step: int = 0
    history: dict = dataclasses.field(default_factory=lambda: _history_template())
    losses: list = dataclasses.field(default_factory=list)  # the unfinished epoch's
    accs: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def end_epoch(self, eval_loss, eval_acc) -> None:
        """Appends the finished epoch's means (and evaluation) to the history."""
        h = self.history
        h["train_loss"].append(float(jnp.mean(jnp.stack([jnp.asarray(v) for v in self.losses]))))
        h["train_accuracy"].append(float(jnp.mean(jnp.stack([jnp.asarray(v) for v in self.accs]))))
        h["eval_loss"].append(eval_loss)
        h["eval_accuracy"].append(eval_acc)
        h["seconds"].append(self.seconds)
        self.losses, self.accs = [], []

    def meta(self, config: TrainConfig, num_classes: int) -> dict:
        """The JSON saved beside the arrays of a checkpoint."""
        return {
            "config": config.to_dict(),
            "num_classes": num_classes,
            "history": self.history,
            "epoch_losses": [float(v) for v in self.losses],
            "epoch_accuracies": [float(v) for v in self.accs],
        }


@dataclasses.dataclass
class _Loop:
    """Runs an epoch's steps (batches, augmentation, sharding) and saves checkpoints."""

    plan: _Plan
    config: TrainConfig
    step_fn: Callable
    mesh: Any
    ckpt: Any
    on_checkpoint: Callable[[int], None] | None
    num_workers: int

    def epoch(self, run: _Run, train_ds, epoch: int, bar) -> None:
        """The steps of ``epoch`` from ``run.step`` on (a resumed epoch skips the others)."""
        from svebi_jax import data as D

        t0 = time.perf_counter()
        skip = run.step - epoch * self.plan.steps_per_epoch  # > 0 only in a resumed epoch
        batches = _epoch_batches(
            train_ds, self.config, epoch, skip, self.plan.hosts, D, self.num_workers
        )
        for images, labels, mask in batches:
            images, labels, mask = self.device_batch(run.step, images, labels, mask)
            run.params, run.opt_state, loss, acc = self.step_fn(
                run.params, run.opt_state, images, labels, mask
            )
            run.losses.append(loss)
            run.accs.append(acc)
            run.step += 1
            if run.step % self.plan.steps_per_epoch:
                self.save(run, force=False)  # epoch ends are saved by fit, with their history
            if bar is not None:
                bar.update(1)
                if run.step % 10 == 0:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss):.4f}")
        run.seconds = time.perf_counter() - t0

    def device_batch(self, step: int, images, labels, mask):
        """Step ``step``'s augmented batch, on the mesh's devices when there is one.

        An in-memory set yields the global batch on every host (augmented whole, then cut to
        this host's rows); a stream yields this host's rows, augmented with their rows of
        the global batch's offsets.
        """
        from svebi_jax import sharding as S

        index, count = self.plan.hosts
        if self.config.augment_shift:
            key = jax.random.fold_in(_augment_key(self.config), step)
            if self.plan.in_memory or count == 1:
                images = random_shift(key, images, self.config.augment_shift)
            else:
                images = _shift_host_rows(key, images, self.config.augment_shift, index, count)
        if self.mesh is None:
            return images, labels, mask
        if self.plan.in_memory:
            images, labels = _host_rows((images, labels), index, count)
        return S.shard_batch(self.mesh, (images, labels, mask))

    def save(self, run: _Run, *, force: bool) -> None:
        """A checkpoint of ``run`` when one is due (or ``force``)."""
        if self.ckpt is None:
            return
        meta = run.meta(self.config, self.plan.num_classes)
        saved = self.ckpt.save(run.step, run.params, run.opt_state, meta, force=force)
        if saved and self.on_checkpoint:
            self.on_checkpoint(run.step)


class _Evaluator:
    """:func:`evaluate` on ``eval_ds`` after every ``eval_every``-th epoch and the last."""

    def __init__(self, apply_fn, eval_ds, config: TrainConfig, eval_every: int):
        self.apply_fn, self.eval_ds, self.config = apply_fn, eval_ds, config
        self.eval_every = eval_every
        self.step = make_eval_step(apply_fn)

    def __call__(self, run: _Run, epoch: int) -> tuple[float | None, float | None]:
        last = epoch == self.config.epochs - 1
        if (epoch + 1) % self.eval_every and not last:
            return None, None
        return evaluate(
            self.apply_fn,
            _returned_params(run.params),
            self.eval_ds,
            self.config.eval_batch_size,
            eval_step=self.step,
        )


def _progress_bar(progress: bool, total: int, initial: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="batch")


def _augment_key(config: TrainConfig) -> Array:
    return jax.random.fold_in(jax.random.key(config.seed), 0x5EB1)


def _returned_params(params):
    """``params`` as this process can use them alone: global (multi-process) arrays come
    back as local copies; one process's arrays are returned as they are."""
    if jax.process_count() == 1:
        return params
    from svebi_jax import sharding as S

    return jax.tree.map(jnp.asarray, S.to_host(params))


def _check_stream(source, apply_fn, params, batch_size: int, num_hosts: int) -> tuple[int, int]:
    """``(K, N)`` of a streaming training source, checked against the model."""
    if not (hasattr(source, "batches") and hasattr(source, "image_shape")):
        raise TypeError(
            "train_ds must be a Dataset (images [N, H, W, C], labels [N]) or a streaming "
            f"svebi_jax.data.stream.ImageSource, got {type(source).__name__}"
        )
    if batch_size % num_hosts:
        raise ValueError(
            f"config.batch_size must be a multiple of the {num_hosts} hosts (each reads "
            f"batch_size / hosts rows of every step), got {batch_size}"
        )
    shape = (1,) + tuple(int(v) for v in source.image_shape)
    num_classes = _num_classes(apply_fn, params, np.zeros(shape, np.float32))
    if int(source.num_classes) != num_classes:
        raise ValueError(
            f"train_ds has {source.num_classes} classes but the model has {num_classes} "
            "(its readout size K); build the model with the source's class count"
        )
    return num_classes, len(source)


def _epoch_batches(
    train_ds, config: TrainConfig, epoch: int, skip: int, hosts, D, num_workers: int = 0
):
    """``(images, labels, mask | None)`` of one epoch's steps from ``skip`` on.

    An in-memory set is shuffled by ``data.batches`` (the skipped steps are sliced past); a
    stream reads this host's rows and starts at step ``skip`` without reading the others
    (its ``mask`` drops unreadable files from the loss).
    """
    seed = config.seed + epoch
    if hasattr(train_ds, "images") and hasattr(train_ds, "labels"):
        it = D.batches(train_ds, config.batch_size, seed=seed, drop_remainder=True)
        for k, (images, labels) in enumerate(it):
            if k >= skip:
                yield images, labels, None
        return
    local = config.batch_size // hosts[1]
    with train_ds.batches(
        local, seed=seed, drop_remainder=True, start=skip, num_workers=num_workers
    ) as it:
        for batch in it:
            V.check_labels(batch.labels, num_classes=int(train_ds.num_classes), name="labels")
            yield batch.images, batch.labels, np.asarray(batch.mask)


def _host_rows(batch, index: int, count: int):
    """This host's contiguous ``B / P`` rows of a global batch (all rows with one host)."""
    if count == 1:
        return batch
    return jax.tree.map(
        lambda x: x[index * (x.shape[0] // count) : (index + 1) * (x.shape[0] // count)], batch
    )


def _resume(ckpt, run: _Run, config: TrainConfig, num_classes: int) -> None:
    """Loads the newest checkpoint (checked against this run) into ``run``, if there is one."""
    latest = ckpt.read_meta()
    if latest is None:
        return
    step, meta = latest
    where = f"checkpoint_dir {str(ckpt.directory)!r} (step {step})"
    saved_k = meta.get("num_classes")
    if saved_k != num_classes:
        raise ValueError(
            f"{where} was written for a model with {saved_k} classes, but this model has "
            f"{num_classes} (its readout size K); use the matching model or a new directory"
        )
    saved_cfg = meta.get("config", {})
    now = config.to_dict()
    diff = sorted(k for k in set(saved_cfg) | set(now) if saved_cfg.get(k) != now.get(k))
    if diff:
        raise ValueError(
            f"{where} was written with another training config (differs in {diff}); "
            "resume with the same config or use a new directory"
        )
    run.step, run.params, run.opt_state, meta = ckpt.restore(run.params, run.opt_state)
    run.history = {k: list(meta["history"][k]) for k in _history_template()}
    run.losses = [np.float32(v) for v in meta.get("epoch_losses", [])]
    run.accs = [np.float32(v) for v in meta.get("epoch_accuracies", [])]
