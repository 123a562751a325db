"""Feed-forward spiking networks as data (layer specs) plus pure runners.

A network is a tuple of frozen layer specs, e.g. the paper's shallow MNIST SNN::

    (Conv("conv1", 12, 5), LIF(), MaxPool(2),
     Conv("conv2", 64, 5), LIF(), MaxPool(2),
     Flatten(), Dense("fc1", 128), LIF(), Dense("fc2", 10))

The last :class:`Dense` is the non-spiking integrator readout. Specs carry the geometry
(kernel, stride, padding), so shapes and receptive fields are derived from them
(:func:`layer_geometry`), and the same specs drive two exactly equivalent runners:

- ``"time_batched"`` (default): each synaptic layer computes its currents for all ``T`` steps
  in one batched conv/matmul over ``[T·B, ...]``, then the LIF is scanned over time. With direct
  input the first layer's current is the same at every step and is computed once.
- ``"stepwise"``: the whole network is advanced one timestep at a time inside one
  :func:`jax.lax.scan` (the textbook order of evaluation), used as the reference.

Parameters are a plain mapping ``{layer_name: {"kernel": ..., "bias": ...}}`` with flax's
layouts (conv kernel ``[kh, kw, C_in, C_out]``, dense kernel ``[F_in, F_out]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from svebi_jax import _validation as V
from svebi_jax import lif

Array = jax.Array
Params = Mapping[str, Mapping[str, Array]]
RunMode = Literal["time_batched", "stepwise"]
Record = Literal["mean", "spikes"] | None


# ----------------------------------------------------------------------------- layer specs


@dataclasses.dataclass(frozen=True)
class Conv:
    """2-D convolution, NHWC, square kernel, symmetric integer padding (0 = ``VALID``).

    ``dilation`` spaces the kernel taps (effective window ``dilation·(kernel_size-1) + 1``);
    ``groups`` splits the channels into independent groups (kernel ``[k, k, C_in/groups,
    features]``, as in ``torch.nn.Conv2d``).
    """

    name: str
    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    dilation: int = 1
    groups: int = 1


@dataclasses.dataclass(frozen=True)
class Dense:
    """Fully connected layer over the last axis."""

    name: str
    features: int
    use_bias: bool = True


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """Max pooling over a square window (stride defaults to the window)."""

    window: int
    stride: int | None = None
    padding: int = 0


@dataclasses.dataclass(frozen=True)
class AvgPool:
    """Average pooling over a square window (stride defaults to the window)."""

    window: int
    stride: int | None = None
    padding: int = 0


@dataclasses.dataclass(frozen=True)
class SumPool:
    """Sum pooling over a square window (stride defaults to the window): ``window²`` × average."""

    window: int
    stride: int | None = None
    padding: int = 0


@dataclasses.dataclass(frozen=True)
class Scale:
    """Element-wise gain ``x ⊙ s`` with ``s = params[name]["scale"]`` (broadcast to ``[H, W, C]``
    or ``[F]``), e.g. NIR's ``Scale`` node."""

    name: str


@dataclasses.dataclass(frozen=True)
class Flatten:
    """Flattens ``[..., H, W, C]`` to ``[..., H·W·C]``."""


@dataclasses.dataclass(frozen=True)
class LIF:
    """LIF neurons on the output of the preceding synaptic layer.

    ``LIF()`` uses the network-wide dynamics of :class:`SNNConfig`. A *named* ``LIF(name)``
    reads per-layer (or per-neuron) parameters from ``params[name]``, arrays broadcastable to
    the layer's ``[H, W, C]`` (or ``[F]``) output, as imported from NIR graphs:

    - ``"beta"``, ``"threshold"`` (required): decay :math:`\\beta` and threshold :math:`\\theta`;
    - ``"gain"`` :math:`g`, ``"bias"`` :math:`b` (optional): the input current becomes
      :math:`g I + b`;
    - ``"alpha"`` (optional): a current-based synapse
      :math:`J[t] = \\alpha J[t-1] + g I[t]` feeds the membrane :math:`J[t] + b` instead;
    - ``"v_reset"`` (optional): reset potential of the ``"zero"`` reset.

    ``reset`` overrides :attr:`SNNConfig.reset` for this layer. Parameter arrays live in
    ``params`` (not in the hashable spec) so that specs stay static under ``jit``.
    """

    name: str | None = None
    reset: str | None = None

    def __post_init__(self):
        if self.reset is not None:
            lif.check_reset(self.reset)


LayerSpec = Conv | Dense | MaxPool | AvgPool | SumPool | Scale | Flatten | LIF

#: Pooling kinds the model builders offer (``pool=``); only ``"avg"`` and ``"sum"`` export to
#: NIR 1.0, which has no max-pooling node.
POOLS: dict[str, type] = {"max": MaxPool, "avg": AvgPool, "sum": SumPool}


def pool_spec(pool: str, window: int = 2) -> MaxPool | AvgPool | SumPool:
    """The pooling spec named ``pool`` (``"max"``, ``"avg"`` or ``"sum"``) over ``window``."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {tuple(POOLS)}, got {pool!r}")
    return POOLS[pool](window)


@dataclasses.dataclass(frozen=True)
class SNNConfig:
    """Network-wide neuron and simulation settings (static, hashable).

    Attributes:
      num_steps: ``T``, timesteps per forward pass (≥ 1).
      beta: LIF decay :math:`\\beta \\in [0, 1]`.
      threshold: firing threshold :math:`\\theta > 0`.
      reset: ``"subtract"`` (paper), ``"subtract_then_leak"`` (authors' code), ``"zero"`` or
        ``"none"`` (see :mod:`svebi_jax.lif`).
      surrogate: surrogate-gradient name, see :func:`svebi_jax.lif.spike_function`.
      surrogate_slope: slope of the sigmoid surrogate.
      readout_beta: leak of the non-spiking integrator readout (1 = pure integrator).
      detach_reset: stop gradients through the reset term.
    """

    num_steps: int = 10
    beta: float = 0.95
    threshold: float = 1.0
    reset: lif.ResetMode = "subtract"
    surrogate: str = "triangle"
    surrogate_slope: float = 5.0
    readout_beta: float = 1.0
    detach_reset: bool = False

    def __post_init__(self):
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"num_steps (T) must be an integer >= 1, got {self.num_steps!r}")
        lif.check_beta(self.beta)
        lif.check_beta(self.readout_beta)
        lif.check_threshold(self.threshold)
        lif.check_reset(self.reset)
        if self.surrogate not in lif.SURROGATES:
            raise ValueError(f"surrogate must be one of {lif.SURROGATES}, got {self.surrogate!r}")


class SNNOutput(NamedTuple):
    """Output of a spiking network's forward pass.

    Attributes:
      logits: ``[B, K]`` readout potential after the last step divided by ``T``.
      spikes: ``{conv_layer_name: array}`` recorded spike maps of every spiking conv layer
        (LIF output before pooling): ``[B, H, W, C]`` time-means :math:`\\bar S` when
        ``record="mean"``, ``[T, B, H, W, C]`` spike trains when ``record="spikes"``, and
        empty when nothing is recorded.
    """

    logits: Array
    spikes: dict[str, Array]


# ----------------------------------------------------------------------------- geometry


class Geometry(NamedTuple):
    """Shape and receptive field of a layer's output, in input-pixel units.

    Attributes:
      height, width, channels: output map size.
      rf: receptive-field side length in input pixels.
      jump: distance in input pixels between adjacent output cells.
      start: input-pixel coordinate (pixel centres at 0, 1, …) of the centre of output cell
        0's receptive field; cell ``i`` is centred at ``start + i·jump`` (may be fractional,
        and lies outside the image when padding reaches beyond it).
    """

    height: int
    width: int
    channels: int
    rf: int
    jump: int
    start: float


def _window(spec) -> tuple[int, int, int]:
    """``(effective window, stride, padding)`` of a conv (dilation included) or pool spec."""
    if isinstance(spec, Conv):
        return spec.dilation * (spec.kernel_size - 1) + 1, spec.stride, spec.padding
    return spec.window, spec.stride or spec.window, spec.padding


def _walk(layers: Sequence[LayerSpec], input_shape: tuple[int, int, int]):
    """Yields ``(spec, in_channels, Geometry after spec)`` through the layer sequence."""
    h, w, c = (int(v) for v in input_shape)
    rf, jump, start = 1, 1, 0.0
    flat = False
    for spec in layers:
        c_in = c
        if isinstance(spec, (Conv, MaxPool, AvgPool, SumPool)):
            if flat:
                raise ValueError(f"layers: {spec} follows Flatten/Dense; spatial layers come first")
            k, s, p = _window(spec)
            nh = (h + 2 * p - k) // s + 1
            nw = (w + 2 * p - k) // s + 1
            if nh < 1 or nw < 1:
                raise ValueError(
                    f"layers: {spec} does not fit its {h}x{w} input (window {k}, padding {p})"
                )
            h, w = nh, nw
            start = start + ((k - 1) / 2 - p) * jump
            rf = rf + (k - 1) * jump
            jump = jump * s
            if isinstance(spec, Conv):
                c = spec.features
        elif isinstance(spec, Flatten):
            c, h, w, flat = h * w * c, 1, 1, True
        elif isinstance(spec, Dense):
            if not flat and (h, w) != (1, 1):
                raise ValueError(f"layers: Dense {spec.name!r} needs a Flatten before it")
            flat = True
            c = spec.features
            rf, jump, start = max(input_shape[:2]), 1, (max(input_shape[:2]) - 1) / 2
        yield spec, c_in, Geometry(h, w, c, rf, jump, start)


def layer_geometry(
    layers: Sequence[LayerSpec], input_shape: tuple[int, int, int]
) -> dict[str, Geometry]:
    """Output geometry of every named synaptic layer (conv maps before pooling).

    Standard receptive-field arithmetic: for a window ``k``, stride ``s``, padding ``p``,

    .. math::
        n' = \\lfloor (n + 2p - k)/s \\rfloor + 1,\\quad r' = r + (k-1)j,\\quad
        j' = js,\\quad c' = c + \\left(\\tfrac{k-1}{2} - p\\right) j

    Args:
      layers: the network's layer specs.
      input_shape: ``(H, W, C)`` of one input image.

    Returns:
      ``{name: Geometry}`` for every :class:`Conv` (spatial) and :class:`Dense` (``height =
      width = 1``, ``channels = features``; its rf covers the whole input).

    Raises:
      ValueError: if a window does not fit its input.
    """
    return {
        spec.name: geo
        for spec, _, geo in _walk(layers, input_shape)
        if isinstance(spec, (Conv, Dense))
    }


def input_features(
    layers: Sequence[LayerSpec], input_shape: tuple[int, int, int]
) -> dict[str, int]:
    """``{name: C_in}`` of every synaptic layer (input channels or flattened features)."""
    return {
        spec.name: c_in
        for spec, c_in, _ in _walk(layers, input_shape)
        if isinstance(spec, (Conv, Dense))
    }


def conv_layer_names(layers: Sequence[LayerSpec]) -> tuple[str, ...]:
    """Names of the spiking conv layers (a :class:`Conv` followed by :class:`LIF`), in order."""
    names = []
    for spec, nxt in zip(layers, tuple(layers[1:]) + (None,), strict=True):
        if isinstance(spec, Conv) and isinstance(nxt, LIF):
            names.append(spec.name)
    return tuple(names)


def validate_layers(layers: Sequence[LayerSpec]) -> None:
    """Checks the layer sequence: unique names, LIF after synaptic layers, Dense readout last."""
    layers = tuple(layers)
    if not layers or not isinstance(layers[-1], Dense):
        raise ValueError("layers must end with a Dense readout layer")
    names = [s.name for s in layers if isinstance(s, (Conv, Dense, Scale))]
    names += [s.name for s in layers if isinstance(s, LIF) and s.name is not None]
    if len(set(names)) != len(names):
        raise ValueError(f"layers: layer names must be unique, got {names}")
    prev = None
    for spec in layers:
        if isinstance(spec, LIF) and not isinstance(prev, (Conv, Dense)):
            raise ValueError("layers: LIF must directly follow a Conv or Dense layer")
        if not isinstance(spec, LayerSpec):
            raise ValueError(f"layers: unknown layer spec {spec!r}")
        prev = spec


# ----------------------------------------------------------------------------- ops


def _conv(x: Array, p: Mapping[str, Array], spec: Conv) -> Array:
    y = jax.lax.conv_general_dilated(
        x,
        p["kernel"],
        window_strides=(spec.stride, spec.stride),
        padding=((spec.padding, spec.padding), (spec.padding, spec.padding)),
        rhs_dilation=(spec.dilation, spec.dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=spec.groups,
    )
    if spec.use_bias:
        y = y + p["bias"]
    return y


def _pool(x: Array, spec: MaxPool | AvgPool | SumPool) -> Array:
    k, s, p = _window(spec)
    if s == k and p == 0:
        # Non-overlapping windows: a reshape + reduce is exact (VALID floors the size) and its
        # backward pass is ~2.5x faster on CPU than reduce_window's select-and-scatter. Tied
        # maxima (common with binary spikes) share the gradient equally.
        n, h, w, c = x.shape
        hh, ww = h // k, w // k
        x = x[:, : hh * k, : ww * k, :].reshape(n, hh, k, ww, k, c)
        if isinstance(spec, SumPool):
            return x.sum(axis=(2, 4))
        return x.max(axis=(2, 4)) if isinstance(spec, MaxPool) else x.mean(axis=(2, 4))
    pad = ((0, 0), (p, p), (p, p), (0, 0))
    if isinstance(spec, MaxPool):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, s, s, 1), pad)
    summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, k, k, 1), (1, s, s, 1), pad)
    return summed if isinstance(spec, SumPool) else summed / (k * k)


def _apply(x: Array, spec: LayerSpec, params: Params) -> Array:
    """Applies a stateless op to a ``[N, ...]`` batch (N may be T·B)."""
    if isinstance(spec, Conv):
        return _conv(x, params[spec.name], spec)
    if isinstance(spec, (MaxPool, AvgPool, SumPool)):
        return _pool(x, spec)
    if isinstance(spec, Scale):
        return x * params[spec.name]["scale"]
    if isinstance(spec, Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(spec, Dense):
        y = x @ params[spec.name]["kernel"]
        return y + params[spec.name]["bias"] if spec.use_bias else y
    raise ValueError(f"unknown layer spec {spec!r}")


def _apply_time(x: Array, spec: LayerSpec, params: Params) -> Array:
    """Applies an op to ``[T, B, ...]`` as one batched op over ``[T·B, ...]``."""
    t, b = x.shape[:2]
    y = _apply(x.reshape((t * b,) + x.shape[2:]), spec, params)
    return y.reshape((t, b) + y.shape[1:])


def _mask(spikes: Array, mask: Array | None, time_axis: bool) -> Array:
    """Multiplies spikes ``[(T,) B, ..., C]`` by a ``[C]`` or ``[B, C]`` channel mask."""
    if mask is None:
        return spikes
    mask = jnp.asarray(mask, spikes.dtype)
    if mask.ndim == 2:  # [B, C] -> broadcast over spatial axes
        mask = mask.reshape(
            (mask.shape[0],) + (1,) * (spikes.ndim - 2 - time_axis) + mask.shape[1:]
        )
    return spikes * mask


def _check_masks(masks, layers) -> None:
    if masks is None:
        return
    valid = conv_layer_names(layers) + tuple(
        s.name for s, n in zip(layers[:-1], layers[1:], strict=True) if isinstance(n, LIF)
    )
    for name in masks:
        if name not in valid:
            raise ValueError(f"masks: unknown spiking layer {name!r}; expected one of {valid}")


def _check_params(params, layers) -> None:
    """Every synaptic layer has its ``kernel`` (and ``bias``) in ``params``."""
    if not isinstance(params, Mapping):
        raise ValueError(
            f"params must be a {{layer: {{'kernel', 'bias'}}}} mapping, got {type(params).__name__}"
        )
    for spec in layers:
        if isinstance(spec, (Conv, Dense)):
            need = ("kernel", "bias") if spec.use_bias else ("kernel",)
            have = params.get(spec.name)
            missing = [k for k in need if not isinstance(have, Mapping) or k not in have]
            if missing:
                raise ValueError(
                    f"params: layer {spec.name!r} lacks {missing}; params has layers "
                    f"{sorted(params)}"
                )


def _spiking_name(layers, i) -> str | None:
    """Name of the synaptic layer feeding the LIF at position ``i``."""
    return layers[i - 1].name


def _neuron_settings(spec: LIF, params: Params, config: SNNConfig) -> dict:
    """``beta, threshold, reset, v_reset`` of a LIF spec (``params[name]`` for a named one)."""
    reset = spec.reset or config.reset
    if spec.name is None:
        return dict(beta=config.beta, threshold=config.threshold, reset=reset, v_reset=None)
    p = params[spec.name]
    v_reset = p["v_reset"] if "v_reset" in p else None
    return dict(beta=p["beta"], threshold=p["threshold"], reset=reset, v_reset=v_reset)


def _neuron_currents(x: Array, spec: LIF, params: Params, num_steps: int, static: bool) -> Array:
    """Time-major ``[T, ...]`` membrane input of a LIF layer from its synaptic output ``x``.

    ``x`` is ``[B, ...]`` when ``static`` (the same current at every step), else ``[T, B, ...]``.
    A named LIF applies its gain, current-based synapse and bias (see :class:`LIF`).
    """
    p = params[spec.name] if spec.name is not None else {}
    if "gain" in p:
        x = x * p["gain"]
    if "alpha" in p:
        x = jnp.broadcast_to(x, (num_steps,) + x.shape) if static else x
        static = False
        alpha = p["alpha"]
        _, x = jax.lax.scan(lambda j, i: (alpha * j + i,) * 2, jnp.zeros_like(x[0]), x)
    if "bias" in p:
        x = x + p["bias"]
    return jnp.broadcast_to(x, (num_steps,) + x.shape) if static else x


def _readout_beta(layers, params: Params, config: SNNConfig):
    """Leak of the readout: ``params[readout]["beta"]`` (per neuron) or the config's scalar."""
    p = params[layers[-1].name]
    return p["beta"] if "beta" in p else config.readout_beta


def run_time_batched(
    layers: Sequence[LayerSpec],
    params: Params,
    inputs: Array,
    *,
    config: SNNConfig,
    record: Record = None,
    masks: Mapping[str, Array] | None = None,
) -> SNNOutput:
    """Time-batched forward pass (see the module docstring).

    Args:
      layers: layer specs ending with the :class:`Dense` readout.
      params: ``{name: {"kernel", "bias"}}``.
      inputs: ``[B, H, W, C]`` image fed directly at every step, or ``[T, B, H, W, C]`` a
        time-varying input (time-major).
      config: :class:`SNNConfig`.
      record: ``None``, ``"mean"`` (``[B, H, W, C]`` time-mean spike maps) or ``"spikes"``
        (``[T, B, H, W, C]``) for every spiking conv layer.
      masks: optional ``{layer_name: [C] or [B, C]}`` multiplied into that layer's output
        spikes (ablation without model surgery).

    Returns:
      :class:`SNNOutput`.
    """
    layers = tuple(layers)
    x = inputs
    static = inputs.ndim == 4
    conv_names = set(conv_layer_names(layers))
    recorded: dict[str, Array] = {}
    spike_fn = lif.spike_function(
        config.surrogate, threshold=config.threshold, slope=config.surrogate_slope
    )
    for i, spec in enumerate(layers):
        if isinstance(spec, LIF):
            currents = _neuron_currents(x, spec, params, config.num_steps, static)
            static = False
            spikes, _ = lif.lif_scan(
                currents,
                **_neuron_settings(spec, params, config),
                surrogate=spike_fn,
                detach_reset=config.detach_reset,
            )
            name = _spiking_name(layers, i)
            spikes = _mask(spikes, (masks or {}).get(name), time_axis=True)
            if record is not None and name in conv_names:
                recorded[name] = spikes.mean(axis=0) if record == "mean" else spikes
            x = spikes
        elif static:
            x = _apply(x, spec, params)
        else:
            x = _apply_time(x, spec, params)
    if static:  # no spiking layer at all: the readout current is constant in time
        x = jnp.broadcast_to(x, (config.num_steps,) + x.shape)
    logits = lif.integrator_readout(x, beta=_readout_beta(layers, params, config))
    return SNNOutput(logits, recorded)


def run_stepwise(
    layers: Sequence[LayerSpec],
    params: Params,
    inputs: Array,
    *,
    config: SNNConfig,
    record: Record = None,
    masks: Mapping[str, Array] | None = None,
) -> SNNOutput:
    """Reference forward pass: the whole network advances one timestep per scan step.

    Same arguments and result as :func:`run_time_batched`.
    """
    layers = tuple(layers)
    conv_names = set(conv_layer_names(layers))
    spike_fn = lif.spike_function(
        config.surrogate, threshold=config.threshold, slope=config.surrogate_slope
    )
    lif_positions = [i for i, s in enumerate(layers) if isinstance(s, LIF)]
    num_steps = config.num_steps
    readout_beta = _readout_beta(layers, params, config)
    if inputs.ndim == 5:
        xs = inputs
    else:
        xs = jnp.broadcast_to(inputs, (num_steps,) + inputs.shape)

    def step(carry, x_t):
        states, u_out = carry
        new_states = []
        rec = {}
        x = x_t
        k = 0
        for i, spec in enumerate(layers):
            if isinstance(spec, LIF):
                p = params[spec.name] if spec.name is not None else {}
                x = x * p["gain"] if "gain" in p else x
                if states is not None:
                    state, syn = states[k]
                else:  # abstract first step: (LIF state, synaptic current or None)
                    state = lif.init_state(x.shape, x.dtype)
                    syn = jnp.zeros_like(x) if "alpha" in p else None
                if syn is not None:
                    syn = x = p["alpha"] * syn + x
                x = x + p["bias"] if "bias" in p else x
                state, (s, _) = lif.lif_step(
                    state,
                    x,
                    **_neuron_settings(spec, params, config),
                    spike_fn=spike_fn,
                    detach_reset=config.detach_reset,
                )
                new_states.append((state, syn))
                k += 1
                name = _spiking_name(layers, i)
                s = _mask(s, (masks or {}).get(name), time_axis=False)
                if name in conv_names:
                    rec[name] = s
                x = s
            else:
                x = _apply(x, spec, params)
        u_prev = jnp.zeros_like(x) if u_out is None else u_out
        u_new = readout_beta * u_prev + x
        return (tuple(new_states), u_new), rec

    # Shapes of the carry from one abstract step starting at rest.
    (state_shapes, u_shape), _ = jax.eval_shape(lambda x: step((None, None), x), xs[0])
    init_states = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state_shapes)
    assert len(init_states) == len(lif_positions)
    init = (init_states, jnp.zeros(u_shape.shape, u_shape.dtype))
    (_, u_final), rec = jax.lax.scan(step, init, xs)
    recorded = {}
    if record is not None:
        recorded = {n: (v.mean(axis=0) if record == "mean" else v) for n, v in rec.items()}
    return SNNOutput(u_final / num_steps, recorded)


def run_network(
    layers: Sequence[LayerSpec],
    params: Params,
    inputs: Array,
    *,
    config: SNNConfig,
    mode: RunMode = "time_batched",
    record: Record = None,
    masks: Mapping[str, Array] | None = None,
) -> SNNOutput:
    """Runs a spiking network given as specs (dispatches on ``mode``).

    Args:
      layers: layer specs ending with the :class:`Dense` readout.
      params: ``{name: {"kernel", "bias"}}``.
      inputs: ``[B, H, W, C]`` direct input, or time-major ``[T, B, H, W, C]``.
      config: :class:`SNNConfig`.
      mode: ``"time_batched"`` (default, fast) or ``"stepwise"`` (reference).
      record: ``None``, ``"mean"`` or ``"spikes"``; see :class:`SNNOutput`.
      masks: ``{layer_name: [C] or [B, C]}`` multiplied into that layer's spikes.

    Returns:
      :class:`SNNOutput` with ``[B, K]`` logits.

    Raises:
      ValueError: unknown ``mode``/``record``/mask layer, inputs that are not a float
        ``[B, H, W, C]``/``[T, B, H, W, C]`` array, or (when concrete) NaN/inf inputs.
    """
    if record not in (None, "mean", "spikes"):
        raise ValueError(f"record must be None, 'mean' or 'spikes', got {record!r}")
    _check_masks(masks, tuple(layers))
    _check_params(params, tuple(layers))
    inputs = jnp.asarray(V.check_images(inputs, name="inputs", time_major=True))
    if mode == "time_batched":
        return run_time_batched(layers, params, inputs, config=config, record=record, masks=masks)
    if mode == "stepwise":
        return run_stepwise(layers, params, inputs, config=config, record=record, masks=masks)
    raise ValueError(f"mode must be 'time_batched' or 'stepwise', got {mode!r}")
