"""Spiking networks to and from NIR, the Neuromorphic Intermediate Representation.

NIR (the ``nir`` package) is the exchange format that snnTorch, Norse, Sinabs, SpikingJelly,
Lava-dl, Rockpool and spyx export to and import from. :func:`from_nir` turns a feed-forward
convolutional NIR graph into layer specs, parameters and an ``apply_fn`` that every SVEBI
function takes; :func:`to_nir` writes a network built here as a NIR graph::

    net = from_nir("model.nir", num_steps=10, reset="subtract")   # e.g. from snnTorch
    out = net.apply_fn(net.params, images, record="mean")         # images [B, H, W, C]
    rel = sv.fit_relevance(net.apply_fn, net.params, train_images, mu=2.0)
    maps = rel.attribution(geometry=net.geometry)(net.params, images, None)   # [B, H, W]

    to_nir(model, path="shallow_avg.nir")                          # a network trained here

This module lives at ``svebi_jax.interop.nir``; it imports the ``nir`` package absolutely, so
the two never shadow each other.

**Discretization.** NIR neurons are continuous-time ODEs; we integrate them with forward Euler
at a step ``dt``, the scheme the exporters use. For a ``LIF`` node
:math:`\\tau \\dot v = (v_{leak} - v) + R I` this gives

.. math::
    v[t] = \\beta\\, v[t-1] + g\\, I[t] + b,\\qquad
    \\beta = 1 - \\frac{dt}{\\tau},\\quad g = \\frac{dt\\,R}{\\tau},\\quad
    b = \\frac{dt\\,v_{leak}}{\\tau},

``IF`` (:math:`\\dot v = R I`): :math:`\\beta = 1,\\ g = dt\\,R`; ``CubaLIF`` adds a synaptic
current :math:`J[t] = \\alpha J[t-1] + \\frac{dt\\,w_{in}}{\\tau_{syn}} I[t]`,
:math:`\\alpha = 1 - dt/\\tau_{syn}`, which feeds the membrane in the same step; ``LI`` and
``I`` are the same without firing. A spike is emitted in the step of the crossing,
:math:`S[t] = H(v[t] - v_{thr})`. snnTorch's exporter writes ``Leaky(beta)`` as
:math:`\\tau = dt/(1-\\beta)`, :math:`R = \\tau/dt` with ``dt = 1e-4``, which this maps back to
exactly :math:`\\beta` and :math:`g = 1`: snnTorch's own update
:math:`U[t] = \\beta U[t-1] + I[t] - \\theta S[t-1]`. Gains within ``1e-6`` of 1 are set to
exactly 1 (the :math:`\\tau/dt` round trip in float32 leaves one-ulp residues), and
:math:`\\beta` is computed in float64 before rounding to float32, which recovers the exporter's
float32 :math:`\\beta` exactly.

**Reset.** NIR's ``LIF``/``IF``/``CubaLIF`` reset the potential *to* ``v_reset`` (our
``"zero"`` reset, with ``v_reset``). snnTorch's default subtractive reset
(``Leaky(reset_mechanism="subtract")``: :math:`U[t] = \\beta U[t-1] + I[t] - \\theta S[t-1]`)
cannot be expressed in NIR 1.0 and its exporter does not record it: pass
``reset="subtract"`` for such graphs. The reset is taken from, in order: the ``reset``
argument, a ``"reset"`` entry in a neuron node's metadata, in the graph's metadata (both
written by :func:`to_nir`), else NIR's reset to ``v_reset``. That last case is an assumption
the graph cannot confirm: an snnTorch export imported that way spikes differently from
snnTorch (in the tests, 6-19 % of a conv layer's spike cells). So :func:`from_nir` then
warns (:class:`NIRResetWarning`, naming the neuron nodes, the assumed reset and snnTorch's
subtractive one) instead of refusing, since NIR's own semantics is that reset and graphs
from other simulators (Norse, Sinabs, spyx) rely on it; pass ``reset=`` explicitly (e.g.
``reset="zero"``) to state the choice and silence the warning.

**Layouts.** NIR tensors are channels-first (``[C, H, W]``, conv weights ``[O, I, kh, kw]``);
the runner is channels-last. Weights and per-neuron parameters are converted once, at import
(and back at export), and the first dense layer after a ``Flatten`` has its input rows permuted
from NIR's ``C·H·W`` order to ours (``H·W·C``), so ``apply_fn`` takes ``[B, H, W, C]`` images.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import layers as L
from svebi_jax import lif
from svebi_jax.models.snn import run_checked

Array = jax.Array

#: ``dt`` assumed when neither the argument nor the graph's metadata gives one: the value
#: snnTorch's exporter hard-codes (``snntorch.export_nir``: ``dt = 1e-4``).
DEFAULT_DT = 1e-4
#: Gains ``g`` with ``|g - 1| <= GAIN_SNAP`` are treated as exactly 1 (float32 round-trip residue).
GAIN_SNAP = 1e-6

#: NIR node types :func:`from_nir` understands (``Input``/``Output`` included).
SUPPORTED_NODES: tuple[str, ...] = (
    "Input",
    "Output",
    "Affine",
    "Linear",
    "Conv2d",
    "Flatten",
    "AvgPool2d",
    "SumPool2d",
    "Scale",
    "LIF",
    "CubaLIF",
    "IF",
    "LI",
    "I",
    "Threshold",
)
_NEURONS = ("LIF", "CubaLIF", "IF", "LI", "I", "Threshold")


class NIRResetWarning(UserWarning):
    """:func:`from_nir` assumed NIR's reset to ``v_reset`` for neurons whose graph records
    no reset (see the module docstring); pass ``reset=`` to choose it explicitly."""


class NIRNetwork(NamedTuple):
    """A NIR graph made runnable: what every SVEBI function takes.

    Attributes:
      apply_fn: ``apply_fn(params, images, *, record=None, masks=None, mode="time_batched")``
        → :class:`~svebi_jax.layers.SNNOutput`; images ``[B, H, W, C]`` (direct input at each
        of the ``T`` steps) or time-major ``[T, B, H, W, C]``. Pure, composes with ``jit``,
        ``vmap`` and ``grad``.
      params: ``{name: {array}}``: conv/dense ``kernel``/``bias`` (flax layouts), per-layer
        neuron parameters under named LIF layers (see :class:`~svebi_jax.layers.LIF`).
      layers: the layer specs (see :mod:`svebi_jax.layers`).
      config: the :class:`~svebi_jax.layers.SNNConfig` (``num_steps`` and, for networks whose
        neurons share one ``beta``/``threshold``, those values).
      input_shape: ``(H, W, C)`` of one image.
      geometry: ``{layer: Geometry}`` from :func:`~svebi_jax.layers.layer_geometry`, for the
        aligned heatmaps and receptive-field crops.
      node_names: ``{our name: NIR node key}`` for every synaptic layer and neuron layer.
    """

    apply_fn: Callable[..., L.SNNOutput]
    params: dict[str, dict[str, Array]]
    layers: tuple[L.LayerSpec, ...]
    config: L.SNNConfig
    input_shape: tuple[int, int, int]
    geometry: dict[str, L.Geometry]
    node_names: dict[str, str]

    @property
    def conv_layer_names(self) -> tuple[str, ...]:
        """Names of the spiking conv layers (recorded by ``record=``), input to output."""
        return L.conv_layer_names(self.layers)


def make_apply_fn(
    layers: Sequence[L.LayerSpec], config: L.SNNConfig, input_shape: tuple[int, int, int]
) -> Callable[..., L.SNNOutput]:
    """``apply_fn(params, images, *, record=None, masks=None, mode="time_batched")`` for specs.

    The same contract as :func:`svebi_jax.models.functional`'s ``apply_fn``: images are
    validated against ``input_shape`` (``(H, W, C)``) and run by
    :func:`~svebi_jax.layers.run_network`.
    """
    layers = tuple(layers)
    input_shape = tuple(int(v) for v in input_shape)

    def apply_fn(params, images, *, record=None, masks=None, mode="time_batched"):
        return run_checked(
            layers,
            params,
            images,
            config=config,
            input_shape=input_shape,
            mode=mode,
            record=record,
            masks=masks,
        )

    return apply_fn


# ----------------------------------------------------------------------------- reading


def _nir():
    try:
        import nir
    except ImportError as err:  # pragma: no cover - nir comes with spyx
        raise ImportError("svebi_jax.interop.nir needs the `nir` package: pip install nir") from err
    return nir


def _check_file(path: pathlib.Path) -> None:
    """Clear errors for a missing file, a non-HDF5 file, or an HDF5 file that is not NIR."""
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"graph_or_path: no NIR file at {str(path)!r}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(
            f"graph_or_path: {str(path)!r} is not a NIR file (NIR files are HDF5; {err})"
        ) from None
    with f:
        if "node" not in f or "version" not in f:
            raise ValueError(
                f"graph_or_path: {str(path)!r} is an HDF5 file but not a NIR graph "
                f"(no 'version'/'node' entries; found {sorted(f.keys())})"
            )
        nodes = f["node"].get("nodes")
        if nodes is None:
            return
        for key, node in nodes.items():
            kind = node["type"][()] if "type" in node else b"?"
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind not in SUPPORTED_NODES and kind not in ("NIRGraph", "Delay", "Conv1d"):
                raise ValueError(
                    f"graph_or_path: node {key!r} has unknown NIR type {kind!r}; "
                    f"supported: {SUPPORTED_NODES}"
                )


def load_graph(graph_or_path):
    """A ``nir.NIRGraph`` from a graph or a ``.nir`` file (clear errors for bad input)."""
    nir = _nir()
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path
    if isinstance(graph_or_path, (str, os.PathLike)):
        path = pathlib.Path(graph_or_path)
        _check_file(path)
        try:
            return nir.read(path, type_check=False)
        except Exception as err:  # nir raises AssertionError/KeyError/ValueError
            raise ValueError(
                f"graph_or_path: {str(path)!r} could not be read as a NIR graph: "
                f"{type(err).__name__}: {err}"
            ) from err
    raise TypeError(
        "graph_or_path must be a nir.NIRGraph or the path of a .nir file, "
        f"got {type(graph_or_path).__name__}"
    )


def _kind(node) -> str:
    return type(node).__name__


def _chain(graph) -> list[str]:
    """Node keys from the ``Input`` to the ``Output`` of a feed-forward chain graph.

    Raises:
      ValueError: subgraphs, unknown node types, dangling edges, recurrent edges (cycles),
        branches or merges, several or no inputs/outputs, nodes off the chain.
    """
    nir = _nir()
    nodes = dict(graph.nodes)
    for key, node in nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise ValueError(
                f"node {key!r} is a nested NIRGraph (e.g. a recurrent layer exported by "
                "RLeaky/RSynaptic); the layer-spec runner runs feed-forward chains only"
            )
        if _kind(node) not in SUPPORTED_NODES:
            raise ValueError(
                f"node {key!r} has unsupported NIR type {_kind(node)!r}; "
                f"supported: {SUPPORTED_NODES}"
            )
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for edge in graph.edges:
        a, b = (str(v) for v in edge)
        for end in (a, b):
            if end not in nodes:
                raise ValueError(f"edge ({a!r} -> {b!r}) names node {end!r}, not in the graph")
        succ[a].append(b)
        pred[b].append(a)
    # Recurrence: an edge back to a node on the current DFS path.
    state: dict[str, int] = {}
    for root in nodes:
        if state.get(root):
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            key, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[key] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                raise ValueError(
                    f"recurrent edge ({key!r} -> {nxt!r}): node {nxt!r} "
                    f"({_kind(nodes[nxt])}) feeds back into itself; the layer-spec runner "
                    "runs feed-forward networks only"
                )
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    for key in nodes:
        if len(succ[key]) > 1:
            raise ValueError(
                f"node {key!r} ({_kind(nodes[key])}) feeds {len(succ[key])} nodes "
                f"{succ[key]}: branching graphs are not supported (a chain is)"
            )
        if len(pred[key]) > 1:
            raise ValueError(
                f"node {key!r} ({_kind(nodes[key])}) sums {len(pred[key])} inputs "
                f"{pred[key]}: merging graphs are not supported (a chain is)"
            )
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"the graph must have exactly one Input and one Output node, got inputs "
            f"{inputs} and outputs {outputs}"
        )
    order = [inputs[0]]
    while succ[order[-1]]:
        order.append(succ[order[-1]][0])
    if order[-1] != outputs[0]:
        raise ValueError(
            f"the chain from Input {inputs[0]!r} ends at node {order[-1]!r} "
            f"({_kind(nodes[order[-1]])}), not at the Output {outputs[0]!r}"
        )
    off = sorted(set(nodes) - set(order))
    if off:
        raise ValueError(f"nodes {off} are not on the path from Input to Output")
    return order


def _pair(value, what: str, key: str, node) -> int:
    """A square (equal-pair) integer parameter, or a clear error."""
    arr = np.atleast_1d(np.asarray(value)).ravel()
    if arr.size not in (1, 2) or (arr.size == 2 and arr[0] != arr[1]):
        raise ValueError(
            f"node {key!r} ({_kind(node)}): {what} {arr.tolist()} is not square; the runner "
            "supports equal height/width kernels, strides, padding and dilation"
        )
    return int(arr[0])


def _declared_input(node) -> tuple[int, ...] | None:
    t = getattr(node, "input_type", None)
    t = None if t is None else t.get("input")
    if t is None or np.asarray(t).size == 0:
        return None
    return tuple(int(v) for v in np.ravel(t))


def _to_last(a: np.ndarray) -> np.ndarray:
    """Channels-first ``[C, H, W]`` → channels-last ``[H, W, C]`` (other ranks unchanged)."""
    return a.transpose(1, 2, 0) if a.ndim == 3 else a


def _to_first(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 0, 1) if a.ndim == 3 else a


def _neuron_array(node, key: str, field: str, shape: tuple[int, ...]) -> np.ndarray:
    """A per-neuron NIR parameter as a float64 array of ``shape`` (channels-first)."""
    a = np.asarray(getattr(node, field), dtype=np.float64)
    if a.size == 1:
        return np.full(shape, a.ravel()[0])
    if a.shape != tuple(shape):
        raise ValueError(
            f"node {key!r} ({_kind(node)}): {field} has shape {a.shape}, but the layer it "
            f"acts on has shape {list(shape)} (channels-first)"
        )
    return a


def _compact(a: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Channels-last float32 copy of ``a``, a 0-d array when all entries are equal."""
    a = np.asarray(a)
    if a.size and np.all(a == a.ravel()[0]):
        return np.asarray(a.ravel()[0], dtype)
    return np.ascontiguousarray(_to_last(a)).astype(dtype)


def _decay(dt: float, tau: np.ndarray, key: str, node, field: str) -> np.ndarray:
    """``1 - dt/tau`` in float64, checked to lie in [0, 1]."""
    with np.errstate(divide="ignore"):
        beta = 1.0 - dt / tau
    if not np.all(np.isfinite(beta)) or np.any(beta < 0) or np.any(beta > 1):
        raise ValueError(
            f"node {key!r} ({_kind(node)}): {field} (min {float(np.min(tau)):g}) gives a decay "
            f"1 - dt/{field} outside [0, 1] with dt = {dt:g}; pass the dt the exporter used "
            f"(from_nir(..., dt=...))"
        )
    return beta


def _snap(gain: np.ndarray) -> np.ndarray | None:
    """``None`` when the gain is 1 (within :data:`GAIN_SNAP`), else the gain."""
    return None if np.all(np.abs(gain - 1.0) <= GAIN_SNAP) else gain


class _Neuron(NamedTuple):
    beta: np.ndarray  # channels-first float64
    threshold: np.ndarray
    reset: str
    gain: np.ndarray | None = None
    bias: np.ndarray | None = None
    alpha: np.ndarray | None = None
    v_reset: np.ndarray | None = None


def _neuron(node, key, shape, dt, reset, threshold_node=None) -> _Neuron:
    """Discretizes a NIR neuron node (see the module docstring)."""
    kind = _kind(node)

    def arr(field):
        return _neuron_array(node, key, field, shape)

    def v_reset():
        vr = arr("v_reset") if getattr(node, "v_reset", None) is not None else None
        return None if vr is None or not np.any(vr) else vr

    def nonzero(a):
        return a if np.any(a) else None

    if kind == "Threshold":
        return _Neuron(np.zeros(shape), arr("threshold"), "none")
    if kind == "LI":  # a leaky integrator read through the following Threshold node
        tau = arr("tau")
        thr = _neuron_array(threshold_node[1], threshold_node[0], "threshold", shape)
        return _Neuron(
            _decay(dt, tau, key, node, "tau"),
            thr,
            "none",
            gain=_snap(dt * arr("r") / tau),
            bias=nonzero(dt * arr("v_leak") / tau),
        )
    if kind == "IF":
        return _Neuron(
            np.ones(shape), arr("v_threshold"), reset, gain=_snap(dt * arr("r")), v_reset=v_reset()
        )
    if kind == "LIF":
        tau = arr("tau")
        return _Neuron(
            _decay(dt, tau, key, node, "tau"),
            arr("v_threshold"),
            reset,
            gain=_snap(dt * arr("r") / tau),
            bias=nonzero(dt * arr("v_leak") / tau),
            v_reset=v_reset(),
        )
    if kind == "CubaLIF":
        tau_mem, tau_syn = arr("tau_mem"), arr("tau_syn")
        gain = (dt * arr("w_in") / tau_syn) * (dt * arr("r") / tau_mem)
        return _Neuron(
            _decay(dt, tau_mem, key, node, "tau_mem"),
            arr("v_threshold"),
            reset,
            gain=_snap(gain),
            bias=nonzero(dt * arr("v_leak") / tau_mem),
            alpha=_decay(dt, tau_syn, key, node, "tau_syn"),
            v_reset=v_reset(),
        )
    raise AssertionError(kind)  # pragma: no cover


def _check_threshold(n: _Neuron, key, node) -> None:
    if np.any(n.threshold <= 0) or not np.all(np.isfinite(n.threshold)):
        raise ValueError(
            f"node {key!r} ({_kind(node)}): thresholds must be finite and > 0, got min "
            f"{float(np.min(n.threshold)):g}"
        )


def _name(key: str, prefix: str, count: int, taken: set[str]) -> str:
    name = key if key.isidentifier() and key not in taken else f"{prefix}{count}"
    while name in taken:
        name = f"{name}_"
    taken.add(name)
    return name


def from_nir(
    graph_or_path,
    *,
    num_steps: int,
    dt: float | None = None,
    reset: str | None = None,
    surrogate: str = "triangle",
    surrogate_slope: float = 5.0,
    detach_reset: bool = False,
) -> NIRNetwork:
    """Imports a feed-forward convolutional NIR graph for SVEBI.

    Supported nodes: ``Input``/``Output``; ``Conv2d`` (square kernel/stride/padding/dilation,
    ``groups``, integer or ``"same"``/``"valid"`` padding), ``Affine``, ``Linear``,
    ``Flatten`` (of a whole ``[C, H, W]`` map), ``AvgPool2d``, ``SumPool2d``, ``Scale``;
    neurons ``LIF``, ``CubaLIF``, ``IF``, ``LI`` + ``Threshold`` (a non-resetting spiking
    neuron), ``Threshold``, each directly after a ``Conv2d``/``Affine``/``Linear`` (a ``Scale``
    in between is folded into the neuron's input gain). The output is the last dense layer's
    integrated current (:math:`\\text{logits} = v[T]/T`), leaky when it ends in an ``LI``, a
    pure integrator after ``I`` or with no readout neuron; a graph whose last layer spikes
    gets an identity readout (``"readout"``): its logits are the spike rates.

    Networks whose neurons share one ``beta``, ``threshold`` and reset, with unit gain, no
    leak voltage and ``v_reset = 0`` (snnTorch's ``Leaky``, our own exports) become plain
    :class:`~svebi_jax.layers.LIF` specs with those values in the config; other networks get
    named LIF layers with their parameters (per layer or per neuron) in ``params``.

    Args:
      graph_or_path: a ``nir.NIRGraph`` or the path of a ``.nir`` file.
      num_steps: ``T``, timesteps per forward pass.
      dt: Euler step that maps time constants to decays (``beta = 1 - dt/tau``); default: the
        graph's ``metadata["dt"]`` (written by :func:`to_nir`), else :data:`DEFAULT_DT`
        (``1e-4``, snnTorch's exporter). It must be the ``dt`` the exporter used.
      reset: ``"subtract"`` (snnTorch's default ``Leaky``), ``"subtract_then_leak"``,
        ``"zero"`` (NIR's reset to ``v_reset``) or ``"none"``; default: from the graph (see
        the module docstring), else ``"zero"`` with a :class:`NIRResetWarning`.
      surrogate, surrogate_slope, detach_reset: training settings, see
        :class:`~svebi_jax.layers.SNNConfig` (the surrogate's width follows
        ``config.threshold``).

    Returns:
      :class:`NIRNetwork` ``(apply_fn, params, layers, config, input_shape, geometry,
      node_names)``.

    Warns:
      NIRResetWarning: ``reset`` is ``None`` and a ``LIF``/``IF``/``CubaLIF`` node's reset is
        recorded neither in its metadata nor in the graph's (e.g. any snnTorch export): NIR's
        reset to ``v_reset`` is assumed; snnTorch's ``Leaky`` needs ``reset="subtract"``.

    Raises:
      FileNotFoundError: no file at ``graph_or_path``.
      ValueError: a file that is not NIR; an unsupported node (named, with its type), a
        recurrent edge, a branch, shapes that do not match between nodes, a decay outside
        [0, 1] for ``dt``, or a structure the layer-spec runner cannot express.
    """
    _nir()  # a clear ImportError first
    if reset is not None:
        lif.check_reset(reset)
    graph = load_graph(graph_or_path)
    meta = dict(getattr(graph, "metadata", None) or {})
    if dt is None:
        dt = float(np.asarray(meta["dt"])) if "dt" in meta else DEFAULT_DT
    if not np.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
    imp = _Importer(graph, dt, reset)
    layers, params, node_names, config_kw, input_shape = imp.run(num_steps)
    if imp.assumed_reset:
        warnings.warn(_reset_warning(imp.assumed_reset), NIRResetWarning, stacklevel=2)
    config = L.SNNConfig(
        num_steps=num_steps,
        surrogate=surrogate,
        surrogate_slope=surrogate_slope,
        detach_reset=detach_reset,
        **config_kw,
    )
    L.validate_layers(layers)
    params = jax.tree.map(jnp.asarray, params)
    geometry = L.layer_geometry(layers, input_shape)
    apply_fn = make_apply_fn(layers, config, input_shape)
    return NIRNetwork(apply_fn, params, layers, config, input_shape, geometry, node_names)


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _reset_warning(keys: Sequence[str]) -> str:
    nodes = ", ".join(repr(k) for k in keys)
    return (
        f"the NIR graph records no reset for its spiking neuron node(s) {nodes}: assuming "
        "NIR's reset to v_reset (reset='zero'). snnTorch's exporter does not record its "
        "default subtractive reset (Leaky(reset_mechanism='subtract'), U[t] = beta U[t-1] + "
        "I[t] - threshold S[t-1]); for an snnTorch export pass reset='subtract'. Pass "
        "reset='zero' (or another mode) to state the choice and silence this warning."
    )


class _Importer:
    """Walks a chain graph node by node, building specs and params (channels-first shapes)."""

    def __init__(self, graph, dt: float, reset: str | None):
        self.nodes = graph.nodes
        self.order = _chain(graph)
        self.dt, self.reset = dt, reset
        self.graph_reset = _text(dict(getattr(graph, "metadata", None) or {}).get("reset"))
        in_key = self.order[0]
        shape = _declared_input(self.nodes[in_key])
        if shape is None or len(shape) not in (1, 3):
            raise ValueError(
                f"Input node {in_key!r} has shape {shape}; expected [C, H, W] or [F] "
                "(no batch axis)"
            )
        self.shape: tuple[int, ...] = tuple(shape)
        self.specs: list[L.LayerSpec] = [] if len(shape) == 3 else [L.Flatten()]
        self.params: dict[str, dict[str, np.ndarray]] = {}
        self.node_names: dict[str, str] = {}
        self.neurons: list[tuple[str, _Neuron]] = []  # (synaptic layer name, neuron)
        self.taken: set[str] = set()
        self.counts = {"conv": 0, "fc": 0, "scale": 0}
        self.flattened_from: tuple[int, int, int] | None = None
        self.pending_gain: np.ndarray | None = None
        self.readout: dict[str, Any] | None = None
        self.assumed_reset: list[str] = []  # neuron nodes given NIR's reset by assumption

    def name(self, key: str, prefix: str) -> str:
        self.counts[prefix] += 1
        return _name(key, prefix, self.counts[prefix], self.taken)

    def run(self, num_steps: int):
        shape = self.shape
        input_shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else (1, 1, shape[0])
        handlers = {
            "Conv2d": self.conv,
            "AvgPool2d": self.pool,
            "SumPool2d": self.pool,
            "Flatten": self.flatten,
            "Affine": self.dense,
            "Linear": self.dense,
            "Scale": self.scale,
        }
        i = 1
        while i < len(self.order) - 1:
            key, prev = self.order[i], self.order[i - 1]
            node = self.nodes[key]
            kind = _kind(node)
            self.check_declared(key, prev, node, kind)
            if kind in _NEURONS:
                i += self.neuron(i, key, prev, node, kind)
            else:
                handlers[kind](key, prev, node, kind)
            i += 1
        layers, config_kw = self.finish()
        return layers, self.params, self.node_names, config_kw, input_shape

    def check_declared(self, key, prev, node, kind) -> None:
        declared = _declared_input(node)
        if kind == "Conv2d" and declared is not None and int(np.asarray(node.groups)) > 1:
            declared = self.shape[:1] + declared[1:]  # nir types grouped convs' channels wrongly
        if declared is not None and kind not in _NEURONS + ("Scale",) and declared != self.shape:
            raise ValueError(
                f"shape mismatch between nodes {prev!r} -> {key!r}: {prev!r} outputs "
                f"{list(self.shape)} but {key!r} ({kind}) expects {list(declared)}"
            )

    def spatial(self, key, kind) -> tuple[int, int, int]:
        if len(self.shape) != 3:
            raise ValueError(f"node {key!r} ({kind}) needs a [C, H, W] input, got {self.shape}")
        return self.shape

    def conv(self, key, prev, node, kind) -> None:
        c, h, wd = self.spatial(key, kind)
        w = np.asarray(node.weight)
        groups = int(np.asarray(node.groups))
        if w.ndim != 4 or w.shape[1] * groups != c:
            raise ValueError(
                f"shape mismatch between nodes {prev!r} -> {key!r}: Conv2d weight "
                f"{list(w.shape)} with groups={groups} takes {w.shape[1] * groups} channels, "
                f"but {prev!r} outputs {list(self.shape)}"
            )
        if w.shape[2] != w.shape[3]:
            raise ValueError(
                f"node {key!r} (Conv2d): kernel {w.shape[2]}x{w.shape[3]} is not square"
            )
        k = int(w.shape[2])
        stride = _pair(node.stride, "stride", key, node)
        dilation = _pair(node.dilation, "dilation", key, node)
        keff = dilation * (k - 1) + 1
        pad = _text(node.padding)
        if isinstance(pad, str) and pad == "valid":
            pad = 0
        elif isinstance(pad, str):  # "same" (nir allows no other string)
            if stride != 1 or (keff - 1) % 2:
                raise ValueError(
                    f"node {key!r} (Conv2d): padding 'same' with stride {stride} and "
                    f"effective kernel {keff} needs asymmetric padding"
                )
            pad = (keff - 1) // 2
        else:
            pad = _pair(pad, "padding", key, node)
        name = self.name(key, "conv")
        bias = getattr(node, "bias", None)
        self.params[name] = {"kernel": np.ascontiguousarray(w.transpose(2, 3, 1, 0), np.float32)}
        if bias is not None:
            self.params[name]["bias"] = np.asarray(bias, np.float32).reshape(-1)
        self.specs.append(
            L.Conv(name, int(w.shape[0]), k, stride, pad, bias is not None, dilation, groups)
        )
        self.node_names[name] = key
        self.shape = (int(w.shape[0]),) + self.window_out(key, kind, h, wd, keff, stride, pad)

    def window_out(self, key, kind, h, wd, k, s, p) -> tuple[int, int]:
        ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"node {key!r} ({kind}) does not fit its {list(self.shape)} input")
        return ho, wo

    def pool(self, key, prev, node, kind) -> None:
        c, h, wd = self.spatial(key, kind)
        k = _pair(node.kernel_size, "kernel_size", key, node)
        s = _pair(node.stride, "stride", key, node)
        p = _pair(node.padding, "padding", key, node)
        self.specs.append(
            (L.AvgPool if kind == "AvgPool2d" else L.SumPool)(k, None if s == k else s, p)
        )
        self.shape = (c,) + self.window_out(key, kind, h, wd, k, s, p)

    def flatten(self, key, prev, node, kind) -> None:
        if len(self.shape) != 3:
            return  # flattening a vector is the identity
        start, end = int(node.start_dim), int(node.end_dim)
        if start not in (0, -3) or end not in (-1, 2):
            raise ValueError(
                f"node {key!r} (Flatten, start_dim={start}, end_dim={end}) keeps some axes of "
                f"its {list(self.shape)} input; only flattening the whole map is supported "
                "(snnTorch: nn.Flatten(start_dim=-3), see the README)"
            )
        self.flattened_from = self.shape
        self.shape = (int(np.prod(self.shape)),)
        self.specs.append(L.Flatten())

    def dense(self, key, prev, node, kind) -> None:
        if len(self.shape) != 1:
            raise ValueError(
                f"node {key!r} ({kind}) needs a flat input; {prev!r} outputs "
                f"{list(self.shape)} (add a Flatten node)"
            )
        w = np.asarray(node.weight)
        if w.ndim != 2 or w.shape[1] != self.shape[0]:
            raise ValueError(
                f"shape mismatch between nodes {prev!r} -> {key!r}: {kind} weight "
                f"{list(w.shape)} takes {w.shape[-1]} inputs but {prev!r} outputs "
                f"{list(self.shape)}"
            )
        if self.flattened_from is not None:  # NIR flattens C·H·W, we flatten H·W·C
            c, h, wd = self.flattened_from
            w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
            self.flattened_from = None
        name = self.name(key, "fc")
        self.params[name] = {"kernel": np.ascontiguousarray(w.T, np.float32)}
        if kind == "Affine":
            self.params[name]["bias"] = np.asarray(node.bias, np.float32).reshape(-1)
        self.specs.append(L.Dense(name, int(w.shape[0]), kind == "Affine"))
        self.node_names[name] = key
        self.shape = (int(w.shape[0]),)

    def scale(self, key, prev, node, kind) -> None:
        scale = _neuron_array(node, key, "scale", self.shape)
        nxt = self.order[self.order.index(key) + 1]
        if _kind(self.nodes[nxt]) in _NEURONS:  # folded into the neuron's input gain
            self.pending_gain = scale if self.pending_gain is None else self.pending_gain * scale
            return
        name = self.name(key, "scale")
        self.params[name] = {"scale": _compact(scale)}
        self.specs.append(L.Scale(name))
        self.node_names[name] = key

    def neuron(self, i, key, prev, node, kind) -> int:
        """Converts the neuron at ``order[i]``; returns how many extra nodes it consumed."""
        nxt = self.order[i + 1]
        if not self.specs or not isinstance(self.specs[-1], (L.Conv, L.Dense)):
            raise ValueError(
                f"node {key!r} ({kind}) follows {prev!r} ({_kind(self.nodes[prev])}); the "
                "runner needs every neuron layer directly after a Conv2d, Affine or Linear node"
            )
        syn = self.specs[-1].name
        if kind in ("I", "LI") and nxt == self.order[-1]:
            self.readout_neuron(key, node, kind, syn)
            return 0
        threshold_node = None
        if kind == "LI":
            if _kind(self.nodes[nxt]) != "Threshold":
                raise ValueError(
                    f"node {key!r} (LI) inside the network must be followed by a Threshold "
                    "node (a non-resetting spiking neuron); only the last layer may be a "
                    "non-spiking LI readout"
                )
            threshold_node = (nxt, self.nodes[nxt])
        elif kind == "I":
            raise ValueError(
                f"node {key!r} (I) inside the network: an integrator is supported only as the "
                "readout (followed by Output)"
            )
        reset = self.reset
        if reset is None and kind in ("LIF", "IF", "CubaLIF"):
            node_meta = dict(getattr(node, "metadata", None) or {})
            reset = _text(node_meta.get("reset", self.graph_reset))
            if not reset:
                reset = "zero"
                self.assumed_reset.append(key)
            lif.check_reset(reset)
        n = _neuron(node, key, self.shape, self.dt, reset, threshold_node)
        if self.pending_gain is not None:
            g = self.pending_gain if n.gain is None else self.pending_gain * n.gain
            n, self.pending_gain = n._replace(gain=_snap(g)), None
        _check_threshold(n, key, node)
        self.neurons.append((syn, n))
        self.specs.append(L.LIF())
        self.node_names[f"{syn}_lif"] = key if threshold_node is None else f"{key}+{nxt}"
        return 0 if threshold_node is None else 1

    def readout_neuron(self, key, node, kind, syn) -> None:
        """A non-spiking ``I``/``LI`` readout: its leak, gain and bias (folded in later)."""
        if not isinstance(self.specs[-1], L.Dense):
            raise ValueError(f"readout node {key!r} ({kind}) must follow Affine/Linear")
        shape, dt = self.shape, self.dt
        if kind == "I":
            beta, gain, bias = np.ones(shape), dt * _neuron_array(node, key, "r", shape), 0.0
        else:
            tau = _neuron_array(node, key, "tau", shape)
            beta = _decay(dt, tau, key, node, "tau")
            gain = dt * _neuron_array(node, key, "r", shape) / tau
            bias = dt * _neuron_array(node, key, "v_leak", shape) / tau
        if self.pending_gain is not None:
            gain, self.pending_gain = gain * self.pending_gain, None
        self.readout = dict(beta=beta, gain=_snap(gain), bias=bias)
        self.node_names[f"{syn}_readout"] = key

    def finish(self):
        """Readout, LIF specs and config keywords once every node is converted."""
        specs, params, shape = self.specs, self.params, self.shape
        if self.pending_gain is not None:
            raise ValueError("a Scale node directly before the Output is not supported")
        if not specs or not isinstance(specs[-1], (L.Dense, L.LIF)):
            last = self.order[-2]
            raise ValueError(
                "the network must end in an Affine/Linear readout or a spiking layer before its "
                f"Output; it ends with node {last!r} ({_kind(self.nodes[last])})"
            )
        if isinstance(specs[-1], L.LIF):  # spiking output: logits are the spike rates
            if len(shape) != 1:
                raise ValueError(
                    f"the last spiking layer outputs a {list(shape)} map; a flat output is needed"
                )
            name = _name("readout", "readout", 0, self.taken)
            specs.append(L.Dense(name, shape[0], use_bias=False))
            params[name] = {"kernel": np.eye(shape[0], dtype=np.float32)}
        config_kw, lif_specs = _neuron_specs(self.neurons, params, self.reset)
        specs = [lif_specs.pop(0) if isinstance(s, L.LIF) else s for s in specs]
        config_kw["readout_beta"] = 1.0
        if self.readout is not None:
            readout, out = self.readout, specs[-1].name
            p = params[out]
            if readout["gain"] is not None:
                p["kernel"] = (p["kernel"] * readout["gain"][None, :]).astype(np.float32)
                if "bias" in p:
                    p["bias"] = (p["bias"] * readout["gain"]).astype(np.float32)
            if np.any(readout["bias"]):
                b = np.broadcast_to(readout["bias"], shape)
                p["bias"] = (p.get("bias", 0.0) + b).astype(np.float32)
                specs[-1] = L.Dense(out, specs[-1].features, use_bias=True)
            beta = _compact(readout["beta"])
            if beta.ndim == 0:
                config_kw["readout_beta"] = float(str(beta))
            else:
                p["beta"] = beta
        return tuple(specs), config_kw


def _neuron_specs(neurons, params, reset):
    """Plain ``LIF()`` specs when every neuron layer shares scalar dynamics, else named ones."""
    plain = bool(neurons)
    first = None
    for _, n in neurons:
        scalar = (
            n.gain is None
            and n.bias is None
            and n.alpha is None
            and n.v_reset is None
            and _compact(n.beta).ndim == 0
            and _compact(n.threshold).ndim == 0
        )
        key = (float(_compact(n.beta)), float(_compact(n.threshold)), n.reset) if scalar else None
        first = key if first is None else first
        plain = plain and scalar and key == first
    if plain:
        beta, threshold, layer_reset = first
        # The shortest decimal that rounds to the same float32 (0.9, not 0.8999999761581421).
        beta, threshold = (float(str(np.float32(v))) for v in (beta, threshold))
        config = dict(beta=beta, threshold=threshold, reset=layer_reset)
        return config, [L.LIF() for _ in neurons]
    specs = []
    for syn, n in neurons:
        name = f"{syn}_lif"
        p = {"beta": _compact(n.beta), "threshold": _compact(n.threshold)}
        for field in ("gain", "bias", "alpha", "v_reset"):
            value = getattr(n, field)
            if value is not None:
                p[field] = _compact(value)
        params[name] = p
        specs.append(L.LIF(name, reset=n.reset))
    config = dict(beta=0.95, threshold=1.0, reset=reset or "subtract")
    return config, specs


# ----------------------------------------------------------------------------- writing


def _pure_params(params) -> dict:
    from flax import nnx

    if isinstance(params, nnx.State):
        params = nnx.to_pure_dict(params)
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a mapping {{layer: {{kernel, bias}}}} or an nnx.State, got "
            f"{type(params).__name__}"
        )
    return {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in params.items()}


def _resolve(model_or_specs, params, input_shape, config):
    from svebi_jax.models.snn import SpikingNetwork

    if isinstance(model_or_specs, SpikingNetwork):
        m = model_or_specs
        return m.layers, m.weights() if params is None else params, m.input_shape, m.config
    if isinstance(model_or_specs, NIRNetwork):
        m = model_or_specs
        return m.layers, m.params if params is None else params, m.input_shape, m.config
    if isinstance(model_or_specs, (list, tuple)) and all(
        isinstance(s, L.LayerSpec) for s in model_or_specs
    ):
        missing = [
            n
            for n, v in (("params", params), ("input_shape", input_shape), ("config", config))
            if v is None
        ]
        if missing:
            raise ValueError(f"to_nir with layer specs needs {', '.join(missing)}")
        return tuple(model_or_specs), params, tuple(input_shape), config
    raise TypeError(
        "model_or_specs must be a SpikingNetwork, a NIRNetwork or a sequence of layer specs, "
        f"got {type(model_or_specs).__name__}"
    )


def _full(value, shape) -> np.ndarray:
    """A (channels-last) scalar or array broadcast to channels-last ``shape``, as float64."""
    return np.broadcast_to(np.asarray(value, np.float64), shape).copy()


def to_nir(
    model_or_specs,
    params=None,
    *,
    input_shape: tuple[int, int, int] | None = None,
    config: L.SNNConfig | None = None,
    dt: float = DEFAULT_DT,
    path: str | os.PathLike | None = None,
):
    """Exports a network built here as a NIR graph (and optionally writes it to ``path``).

    Mapping (inverse of :func:`from_nir`, same discretization): ``Conv`` → ``Conv2d``
    (kernel ``[kh, kw, I, O]`` → ``[O, I, kh, kw]``), ``Dense`` → ``Affine``/``Linear``,
    ``AvgPool``/``SumPool`` → ``AvgPool2d``/``SumPool2d``, ``Flatten`` → ``Flatten`` of the
    ``[C, H, W]`` map (the next dense layer's rows permuted to NIR's ``C·H·W`` order),
    ``Scale`` → ``Scale``; a LIF layer → ``LIF`` with :math:`\\tau = dt/(1-\\beta)`,
    :math:`R = g\\tau/dt`, :math:`v_{leak} = b\\tau/dt` (``IF`` with :math:`R = g/dt` when
    :math:`\\beta = 1`, ``CubaLIF`` with a synapse, ``LI`` + ``Threshold`` without reset); the
    readout → ``Affine`` followed by ``LI`` when it leaks (:math:`\\beta_{out} < 1`). The reset
    mode, which NIR 1.0 cannot express except as reset-to-``v_reset``, is written to every
    neuron node's ``metadata["reset"]`` and the graph's, with ``dt``, so that
    ``from_nir(to_nir(m))`` gives bit-identical spikes.

    Args:
      model_or_specs: a :class:`~svebi_jax.models.SpikingNetwork`, a :class:`NIRNetwork`, or a
        sequence of layer specs (then ``params``, ``input_shape`` and ``config`` are needed).
      params: ``{name: {...}}`` or an ``nnx.State``; default: the model's own.
      input_shape: ``(H, W, C)`` of one image (specs only).
      config: the :class:`~svebi_jax.layers.SNNConfig` (specs only).
      dt: Euler step of the time constants (written to ``metadata["dt"]``).
      path: if given, the graph is also written there with ``nir.write``.

    Returns:
      The ``nir.NIRGraph``.

    Raises:
      ValueError: a max-pooling layer (NIR 1.0 has no max-pool node), missing arguments.
    """
    nir = _nir()
    layers, params, input_shape, config = _resolve(model_or_specs, params, input_shape, config)
    layers = tuple(layers)
    L.validate_layers(layers)
    _check_exportable(layers, dt)
    params = _pure_params(params)
    out = _GraphBuilder(nir, tuple(int(v) for v in input_shape))
    for idx, spec in enumerate(layers):
        if isinstance(spec, L.Conv):
            _export_conv(out, spec, params[spec.name])
        elif isinstance(spec, (L.AvgPool, L.SumPool)):
            _export_pool(out, f"pool{idx}", spec)
        elif isinstance(spec, L.Flatten):
            _export_flatten(out, f"flatten{idx}")
        elif isinstance(spec, L.Scale):
            scale = _to_first(_full(params[spec.name]["scale"], out.shape))
            out.add(spec.name, nir.Scale(scale=scale))
        elif isinstance(spec, L.Dense):
            readout = idx == len(layers) - 1
            _export_dense(out, spec, params[spec.name], config, dt, readout)
        elif isinstance(spec, L.LIF):
            syn = layers[idx - 1].name
            _add_neuron(nir, out.add, f"{syn}_lif", spec, params, config, out.shape, dt, _first)
    out.nodes["output"] = nir.Output(output_type=np.array(_first(out.shape)))
    out.edges.append((out.prev, "output"))
    graph = nir.NIRGraph(
        nodes=out.nodes,
        edges=out.edges,
        metadata={"dt": float(dt), "reset": config.reset, "producer": "svebi_jax"},
        # nir 1.0.8 types a grouped Conv2d's input as weight.shape[1] channels: its type check
        # would reject a correct graph (read such files with nir.read(path, type_check=False)).
        type_check=all(getattr(s, "groups", 1) == 1 for s in layers),
    )
    if path is not None:
        nir.write(path, graph)
    return graph


def _check_exportable(layers, dt) -> None:
    """Refuses a ``dt`` that is not a positive number and max pooling (no NIR 1.0 node)."""
    if not np.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
    for spec in layers:
        if isinstance(spec, L.MaxPool):
            raise ValueError(
                f"layers: {spec} cannot be exported: NIR 1.0 has no max-pooling node (only "
                "AvgPool2d and SumPool2d); build the network with average or sum pooling, e.g. "
                "ShallowSNN(pool='avg', ...) or SVGG19(pool='avg', ...), and train that"
            )


def _first(shape_last: tuple[int, ...]) -> tuple[int, ...]:
    """A channels-last ``(H, W, C)`` shape channels-first, ``(C, H, W)`` (1-D unchanged)."""
    return tuple(shape_last[2:] + shape_last[:2]) if len(shape_last) == 3 else shape_last


class _GraphBuilder:
    """The chain of NIR nodes :func:`to_nir` writes, with the current (channels-last) shape
    and, after a ``Flatten`` of a map, that map's shape (for the next dense layer's rows)."""

    def __init__(self, nir, input_shape: tuple[int, int, int]):
        h, w, c = input_shape
        self.nir = nir
        self.nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([c, h, w]))}
        self.edges: list[tuple[str, str]] = []
        self.prev = "input"
        self.shape: tuple[int, ...] = (h, w, c)
        self.flattened_from: tuple[int, ...] | None = None

    def add(self, key: str, node) -> None:
        self.nodes[key] = node
        self.edges.append((self.prev, key))
        self.prev = key


def _export_conv(out: _GraphBuilder, spec: L.Conv, p) -> None:
    """``Conv`` → ``Conv2d`` (kernel ``[kh, kw, I, O]`` → ``[O, I, kh, kw]``)."""
    shape = out.shape
    weight = np.asarray(p["kernel"]).transpose(3, 2, 0, 1)
    bias = np.asarray(p["bias"]) if spec.use_bias else np.zeros(spec.features, np.float32)
    conv = out.nir.Conv2d(
        input_shape=(shape[0], shape[1]),
        weight=weight,
        stride=spec.stride,
        padding=spec.padding,
        dilation=spec.dilation,
        groups=spec.groups,
        bias=bias,
    )
    conv.input_type = {"input": np.array(_first(shape))}  # nir ignores groups here
    out.add(spec.name, conv)
    keff, s, pd = spec.dilation * (spec.kernel_size - 1) + 1, spec.stride, spec.padding
    out.shape = (
        (shape[0] + 2 * pd - keff) // s + 1,
        (shape[1] + 2 * pd - keff) // s + 1,
        spec.features,
    )


def _export_pool(out: _GraphBuilder, key: str, spec) -> None:
    """``AvgPool``/``SumPool`` → ``AvgPool2d``/``SumPool2d``."""
    shape = out.shape
    k, s, pd = spec.window, spec.stride or spec.window, spec.padding
    cls = out.nir.AvgPool2d if isinstance(spec, L.AvgPool) else out.nir.SumPool2d
    out.add(
        key,
        cls(kernel_size=np.array([k, k]), stride=np.array([s, s]), padding=np.array([pd, pd])),
    )
    out.shape = ((shape[0] + 2 * pd - k) // s + 1, (shape[1] + 2 * pd - k) // s + 1, shape[2])


def _export_flatten(out: _GraphBuilder, key: str) -> None:
    """``Flatten`` of a ``[C, H, W]`` map (nothing for an already flat input)."""
    if len(out.shape) == 3:
        node = out.nir.Flatten(input_type=np.array(_first(out.shape)), start_dim=0, end_dim=-1)
        out.add(key, node)
        out.flattened_from = out.shape
        out.shape = (int(np.prod(out.shape)),)


def _export_dense(out: _GraphBuilder, spec: L.Dense, p, config, dt, readout: bool) -> None:
    """``Dense`` → ``Affine``/``Linear`` (rows in NIR's ``C·H·W`` order after a flattened
    map); the readout also gets an ``LI`` node when it leaks (:math:`\\beta_{out} < 1`)."""
    kernel = np.asarray(p["kernel"])
    if out.flattened_from is not None:
        hh, ww, cc = out.flattened_from
        kernel = kernel.reshape(hh, ww, cc, -1).transpose(2, 0, 1, 3).reshape(hh * ww * cc, -1)
        out.flattened_from = None
    if spec.use_bias:
        out.add(spec.name, out.nir.Affine(weight=kernel.T.copy(), bias=np.asarray(p["bias"])))
    else:
        out.add(spec.name, out.nir.Linear(weight=kernel.T.copy()))
    out.shape = shape = (spec.features,)
    if readout:
        beta = _full(p["beta"] if "beta" in p else config.readout_beta, shape)
        if np.any(beta != 1.0):
            tau = dt / (1.0 - beta)
            out.add(f"{spec.name}_readout", out.nir.LI(tau=tau, r=tau / dt, v_leak=np.zeros(shape)))


def _add_neuron(nir, add, key, spec, params, config, shape, dt, first) -> None:
    """Appends the NIR node(s) of one LIF layer (see :func:`to_nir`)."""
    p = params[spec.name] if spec.name is not None else {}
    reset = spec.reset or config.reset
    beta = _full(p.get("beta", config.beta), shape)
    thr = _to_first(_full(p.get("threshold", config.threshold), shape))
    gain = _to_first(_full(p.get("gain", 1.0), shape))
    bias = _to_first(_full(p.get("bias", 0.0), shape))
    v_reset = _to_first(_full(p.get("v_reset", 0.0), shape))
    beta = _to_first(beta)
    meta = {"reset": reset}
    if reset == "none":
        if "alpha" in p:
            raise ValueError(f"layer {spec.name!r}: a synapse without reset has no NIR node")
        if np.all(beta == 0) and np.all(gain == 1) and not np.any(bias):
            add(key, nir.Threshold(threshold=thr))
            return
        if np.any(beta == 1):
            raise ValueError(f"layer {key!r}: beta = 1 without reset has no NIR node (LI)")
        tau = dt / (1.0 - beta)
        add(key, nir.LI(tau=tau, r=gain * tau / dt, v_leak=bias * tau / dt))
        add(f"{key}_threshold", nir.Threshold(threshold=thr))
        return
    if "alpha" in p:
        alpha = _to_first(_full(p["alpha"], shape))
        tau_syn, tau_mem = dt / (1.0 - alpha), dt / (1.0 - beta)
        node = nir.CubaLIF(
            tau_syn=tau_syn,
            tau_mem=tau_mem,
            r=gain * tau_mem / dt,
            v_leak=bias * tau_mem / dt,
            v_threshold=thr,
            v_reset=v_reset,
            w_in=tau_syn / dt,
            metadata=meta,
        )
    elif np.all(beta == 1.0) and not np.any(bias):
        node = nir.IF(r=gain / dt, v_threshold=thr, v_reset=v_reset, metadata=meta)
    else:
        if np.any(beta == 1.0):
            raise ValueError(f"layer {key!r}: mixes beta = 1 with leaky neurons")
        tau = dt / (1.0 - beta)
        node = nir.LIF(
            tau=tau,
            r=gain * tau / dt,
            v_leak=bias * tau / dt,
            v_threshold=thr,
            v_reset=v_reset,
            metadata=meta,
        )
    add(key, node)
