"""Data parallelism over every device: one :class:`jax.sharding.Mesh`, batch sharded.

svebi_jax scales out the way JAX itself does, with ``jax.jit`` and shardings rather than
``pmap``: the stages that push many images through the network (training, response
extraction, insertion/deletion, the gradient baselines, ablation) take an optional
``mesh=`` keyword. With ``mesh=None`` (the default) nothing changes. With a mesh from
:func:`make_mesh`:

* the **batch axis is sharded** over the mesh's ``"data"`` axis (``PartitionSpec("data")``):
  device :math:`d` of :math:`D` holds rows :math:`[d\\,B/D, (d+1)\\,B/D)`;
* **parameters are replicated** (``PartitionSpec()``) on every device;
* a **training step** is one ``jax.jit`` with ``in_shardings``/``out_shardings``: each device
  differentiates the loss of its rows and XLA all-reduces the gradient, so the update equals
  the one-device update up to float summation order,

  .. math::
      \\nabla_\\theta \\frac{1}{B}\\sum_{b=1}^{B} \\ell_b
      = \\frac{1}{B}\\sum_{d=1}^{D} \\sum_{b \\in \\mathcal{B}_d} \\nabla_\\theta \\ell_b;

* a **per-image computation** (responses, maps, insertion/deletion curves, ablation counts)
  is run by :func:`data_parallel`: the batch is reshaped to ``[D, B/D, ...]`` and the
  one-device function is ``vmap``-ed over the leading, sharded axis inside one ``jit``, so
  every device runs the one-device program on its own rows and nothing crosses devices.

Batches whose size is not a multiple of :math:`D` are padded (:func:`pad_batch`) and the
padding is dropped from (or masked out of) the results, so padding never changes a result.

**Many hosts.** Call ``jax.distributed.initialize()`` first on every host (see the guide
"Running on many hosts"); :func:`make_mesh` then spans the devices of all hosts and every
array a stage computes on is a *global* ``jax.Array`` of which each host holds the rows of its
own devices. Two conventions, both built on JAX's multi-controller API:

* **Training** reads host-local rows: each host reads its own ``B/P`` rows of every global
  batch (:meth:`svebi_jax.data.stream.ImageSource.batches` shards by ``jax.process_index()``
  / ``jax.process_count()`` by default) and :func:`shard_batch` assembles them into one
  global array with ``jax.make_array_from_process_local_data``.
* **Per-image stages** (:func:`data_parallel`: responses, maps, insertion/deletion,
  ablation) take the same, global batch on every host; :func:`global_batch` builds the global
  array with ``jax.make_array_from_callback``, so each host moves only its own devices' rows
  to them, and the (still sharded) results are gathered back to *every* host
  (:func:`to_host`). Nothing of the batch crosses devices inside the compiled stage.

Parameters are replicated with :func:`replicate` (every host passes the same values).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "check_mesh",
    "data_parallel",
    "global_batch",
    "make_mesh",
    "num_shards",
    "pad_batch",
    "padded_size",
    "replicate",
    "replicated_sharding",
    "shard_batch",
    "to_host",
]

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh ``("data",)`` over ``devices`` (default: all devices of all hosts).

    Args:
      devices: the devices to use, in order; default ``jax.devices()``.

    Returns:
      A :class:`jax.sharding.Mesh` of shape ``{"data": D}``.

    Raises:
      ValueError: an empty ``devices`` or one that lists a device twice.
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must list at least one jax.Device, got none")
    if len({id(d) for d in devices}) != len(devices):
        raise ValueError(f"devices must be distinct, got {devices}")
    return Mesh(np.asarray(devices, dtype=object), (DATA_AXIS,))


def check_mesh(mesh: Any, name: str = "mesh") -> Mesh | None:
    """``mesh`` if it is ``None`` or a :class:`Mesh` with a ``"data"`` axis, else an error."""
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"{name} must be None or a jax.sharding.Mesh (svebi_jax.sharding.make_mesh()), "
            f"got {type(mesh).__name__}"
        )
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"{name} must have a {DATA_AXIS!r} axis, got axes {mesh.axis_names}")
    return mesh


def num_shards(mesh: Mesh) -> int:
    """``D``, the number of devices along the mesh's ``"data"`` axis."""
    return int(mesh.shape[DATA_AXIS])


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Sharding of an array whose axis ``axis`` is the batch: ``P(None, ..., "data")``."""
    return NamedSharding(mesh, PartitionSpec(*((None,) * axis), DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of an array held whole by every device: ``P()``."""
    return NamedSharding(mesh, PartitionSpec())


def padded_size(n: int, mesh: Mesh) -> int:
    """The smallest multiple of ``D`` that is ``>= n`` (``n`` rows split evenly)."""
    d = num_shards(mesh)
    return -(-int(n) // d) * d


def pad_batch(x: np.ndarray, size: int, *, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pads ``x`` along ``axis`` to ``size`` rows with copies of its last row, plus a mask.

    Copies (rather than zeros) keep the padding a valid input for every stage (finite images,
    in-range classes, maps without NaN); the mask says which rows are real.

    Args:
      x: ``[..., n, ...]`` array (``n >= 1`` rows along ``axis``).
      size: ``>= n`` rows wanted.
      axis: the batch axis.

    Returns:
      ``(padded [..., size, ...], mask [size] bool)`` with ``mask[:n]`` True.
    """
    x = np.asarray(x)
    n = x.shape[axis]
    if n < 1 or size < n:
        raise ValueError(f"pad_batch: need 1 <= n <= size, got n = {n}, size = {size}")
    mask = np.arange(size) < n
    if size == n:
        return x, mask
    last = np.take(x, [n - 1], axis=axis)
    reps = [1] * x.ndim
    reps[axis] = size - n
    return np.concatenate([x, np.tile(last, reps)], axis=axis), mask


def replicate(mesh: Mesh, tree: Any) -> Any:
    """Places every leaf of ``tree`` (e.g. parameters, optimizer state) whole on every device.

    With several processes every host must pass the same values; each host fills only its own
    devices (``jax.make_array_from_callback``). Leaves already replicated on ``mesh`` are
    returned as they are.
    """
    return jax.tree.map(lambda x: _put_global(x, replicated_sharding(mesh)), tree)


def global_batch(mesh: Mesh, tree: Any, *, axis: int = 0) -> Any:
    """Global arrays of a batch that every process holds whole, sharded along ``axis``.

    Unlike :func:`shard_batch` (host-local rows), every process passes the same, whole
    ``[..., B, ...]`` batch; each process copies only the rows of its own devices
    (``jax.make_array_from_callback``): device :math:`d` gets rows
    :math:`[d\\,B/D, (d+1)\\,B/D)`. With one process this is ``jax.device_put``.

    Args:
      mesh: mesh from :func:`make_mesh`.
      tree: pytree of ``[..., B, ...]`` arrays, ``B`` a multiple of ``D``.
      axis: the batch axis.

    Returns:
      The same pytree of global ``jax.Array`` s sharded ``P(None, ..., "data")``.
    """
    d = num_shards(mesh)

    def put(x):
        if np.ndim(x) <= axis or np.shape(x)[axis] % d:
            raise ValueError(
                f"global_batch: the batch axis {axis} of an array of shape {np.shape(x)} must "
                f"be a multiple of the mesh's {d} devices (pad it with sharding.pad_batch)"
            )
        return _put_global(x, batch_sharding(mesh, axis))

    return jax.tree.map(put, tree)


def _put_global(x: Any, sharding: NamedSharding) -> jax.Array:
    """``x`` (the same global value on every process) as a global array with ``sharding``."""
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
        return x
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        raise ValueError(
            f"cannot reshard a global array of sharding {x.sharding} to {sharding} on the host; "
            "pass host values (NumPy) or arrays with the mesh's sharding"
        )
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_batch(mesh: Mesh, tree: Any, *, axis: int = 0) -> Any:
    """Places every leaf of ``tree`` with its ``axis`` sharded over the mesh's devices.

    With one process, ``tree`` holds the whole (global) batch; with several
    (``jax.process_count() > 1``), it holds this host's rows and the hosts' rows are
    concatenated in process order into one global array.

    Args:
      mesh: mesh from :func:`make_mesh`.
      tree: pytree of ``[..., B, ...]`` arrays (``B`` along ``axis``, a multiple of the
        number of devices; pad with :func:`pad_batch` first).
      axis: the batch axis.

    Returns:
      The same pytree of global ``jax.Array`` s sharded ``P(None, ..., "data")``.

    Raises:
      ValueError: a leaf whose batch axis does not split evenly over the devices.
    """
    sharding = batch_sharding(mesh, axis)
    multi = jax.process_count() > 1
    d = sum(dev.process_index == jax.process_index() for dev in mesh.devices.flat)

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim <= axis or x.shape[axis] % d:
            raise ValueError(
                f"shard_batch: the batch axis {axis} of an array of shape {tuple(x.shape)} must "
                f"be a multiple of the {d} local devices (pad it with sharding.pad_batch)"
            )
        if multi:
            return jax.make_array_from_process_local_data(sharding, np.asarray(x))
        return jax.device_put(x, sharding)

    return jax.tree.map(put, tree)


def to_host(tree: Any) -> Any:
    """NumPy copies of a pytree of (possibly sharded, possibly multi-host) arrays.

    A global array that this process cannot address whole is gathered from all processes
    (``multihost_utils.process_allgather``; every process must call this at the same point);
    a replicated one is read from a local device.
    """

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.sharding.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(get, tree)


def data_parallel(
    fn: Callable[..., Any],
    mesh: Mesh,
    *,
    in_axes: Sequence[int | None],
    out_axes: Any = 0,
) -> Callable[..., Any]:
    """Runs a per-image function on every device's share of the batch (one ``jit``).

    With :math:`D` devices, each batched argument ``[..., B, ...]`` is reshaped to
    ``[D, ..., B/D, ...]`` (the new leading axis sharded over ``"data"``), ``fn`` is
    ``jax.vmap``-ed over that axis and the outputs are merged back:

    .. math::
        \\text{out}[\\dots, \\mathcal{B}_d, \\dots] = fn(\\text{args}[\\dots, \\mathcal{B}_d,
        \\dots]), \\qquad \\mathcal{B}_d = [d\\,B/D, (d+1)\\,B/D).

    Each device thus runs the one-device program on its own ``B/D`` rows. ``fn`` must treat
    the rows of a batch independently (true of every svebi_jax stage); an output axis of
    ``None`` is instead returned per device, ``[D, ...]`` (e.g. per-device counts that the
    caller sums; such a function must mask its padding rows itself).

    ``B`` need not divide by ``D``: the wrapper pads with :func:`pad_batch` and drops the
    padding rows from the merged outputs.

    With several processes (hosts), every process passes the same, global batch (read the
    data with ``shard=(0, 1)`` for these stages); each process copies only its own devices'
    rows to them (:func:`global_batch`), every device computes only its rows, and the
    sharded results are gathered back to every process as NumPy arrays (:func:`to_host`).
    (Training, where the per-host split matters for input bandwidth, assembles host-local
    rows with :func:`shard_batch`.) The compiled program holds no collective over the batch:
    ``wrapped.lower(*args).compile().as_text()`` shows it, and ``wrapped.sharded(*args)``
    returns the outputs as they lie on the devices (global arrays, padded, not gathered).

    Args:
      fn: ``fn(*args) -> pytree``; a pure function.
      mesh: mesh from :func:`make_mesh`.
      in_axes: per positional argument, its batch axis (int) or ``None`` (replicated, e.g.
        parameters); ``None`` arguments (no leaves) are allowed anywhere.
      out_axes: batch axis of each output leaf (an int, or a pytree prefix of ``fn``'s output
        with ints or ``None``).

    Returns:
      ``wrapped(*args)`` returning ``fn``'s pytree of ``jax.Array`` s on the default device
      (merged outputs unpadded to ``B`` rows): the sharded results are gathered, so what a
      caller does with them next runs on one device (a small eager operation on arrays
      sharded over many CPU devices is a multi-device program whose collectives can stall
      a loaded machine).
    """
    mesh = check_mesh(mesh)
    d = num_shards(mesh)
    in_axes = tuple(in_axes)

    def split(x, axis):
        x = jnp.moveaxis(x, axis, 0)
        x = x.reshape((d, x.shape[0] // d) + x.shape[1:])
        x = jax.lax.with_sharding_constraint(x, batch_sharding(mesh))
        return jnp.moveaxis(x, 1, axis + 1)

    def merge(axis, tree):
        if axis is None:
            return tree
        return jax.tree.map(
            lambda x: jax.lax.with_sharding_constraint(
                _merge_at(x, axis), batch_sharding(mesh, axis)
            ),
            tree,
        )

    def body(*args):
        split_args = [
            a if ax is None else jax.tree.map(lambda x, ax=ax: split(x, ax), a)
            for a, ax in zip(args, in_axes, strict=True)
        ]
        vmap_axes = tuple(None if ax is None else 0 for ax in in_axes)
        out = jax.vmap(fn, in_axes=vmap_axes, out_axes=0)(*split_args)
        return _map_prefix(merge, out_axes, out)

    in_shardings = tuple(
        replicated_sharding(mesh) if ax is None else batch_sharding(mesh, ax) for ax in in_axes
    )
    compiled = jax.jit(body, in_shardings=in_shardings)

    def prepare(args):
        """``(n, padded global args)``: one batch size, padded to a multiple of ``D``."""
        if len(args) != len(in_axes):
            raise TypeError(f"expected {len(in_axes)} arguments (in_axes), got {len(args)}")
        sizes = {
            int(np.shape(x)[ax])
            for a, ax in zip(args, in_axes, strict=True)
            if ax is not None
            for x in jax.tree.leaves(a)
        }
        if len(sizes) != 1:
            raise ValueError(f"batched arguments must share one batch size, got sizes {sizes}")
        (n,) = sizes
        size = padded_size(n, mesh)
        if size != n:
            args = tuple(
                a
                if ax is None
                else jax.tree.map(lambda x, ax=ax: pad_batch(np.asarray(x), size, axis=ax)[0], a)
                for a, ax in zip(args, in_axes, strict=True)
            )
        if jax.process_count() > 1:  # host values -> global arrays, each host its own rows
            args = tuple(
                replicate(mesh, a) if ax is None else global_batch(mesh, a, axis=ax)
                for a, ax in zip(args, in_axes, strict=True)
            )
        return n, size, args

    def wrapped(*args):
        n, size, args = prepare(args)
        # Gathered to the host (to every process): the caller's follow-up operations then run
        # on one device and never as small multi-device programs with collectives.
        out = to_host(compiled(*args))
        if size != n:
            out = _map_prefix(
                lambda ax, t: t if ax is None else jax.tree.map(lambda x: _take_rows(x, n, ax), t),
                out_axes,
                out,
            )
        return jax.tree.map(jnp.asarray, out)

    def lower(*args):
        """The compiled stage's ``jax.stages.Lowered`` for these arguments (inspection)."""
        return compiled.lower(*prepare(args)[2])

    def sharded(*args):
        """The compiled stage's outputs as global arrays, still sharded over the mesh (padded
        to a multiple of ``D`` rows, not gathered): what each device holds."""
        return compiled(*prepare(args)[2])

    wrapped.lower = lower
    wrapped.sharded = sharded
    return wrapped


def _take_rows(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """The first ``n`` rows of ``x`` along ``axis`` (drops the padding)."""
    return x[(slice(None),) * axis + (slice(0, n),)]


def _merge_at(x: jax.Array, axis: int) -> jax.Array:
    """``[D, ..., B/D (at axis + 1), ...] -> [..., B (at axis), ...]``."""
    x = jnp.moveaxis(x, 0, axis)  # [..., D, B/D, ...]
    return x.reshape(x.shape[:axis] + (-1,) + x.shape[axis + 2 :])


def _map_prefix(f: Callable[[Any, Any], Any], prefix: Any, tree: Any) -> Any:
    """``f(axis, subtree)`` for every leaf ``axis`` of the pytree prefix ``prefix``."""
    return jax.tree.map(f, prefix, tree, is_leaf=lambda x: x is None)
