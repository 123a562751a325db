"""Checkpoints: parameters as msgpack, configuration and metrics as JSON (never pickle).

A checkpoint is a directory::

    DIR/params.msgpack   flax.serialization.msgpack_serialize of the pure {layer: {name: array}}
    DIR/config.json      JSON config (model description, training config, data names, ...)
    DIR/metrics.json     optional JSON metrics

The model description written by :func:`model_config` and read by :func:`restore_model` is::

    {"model": "shallow" | "spiking_network", "input_shape": [H, W, C], "num_classes": K,
     "snn": {SNNConfig fields}, "layers": [{"type": "Conv", "name": ..., ...}, ...],
     "channels": [c1, c2], "hidden": h}        # the last two only for "shallow"

Files are written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

from svebi_jax import layers as L

PARAMS_FILE = "params.msgpack"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"

_LAYER_TYPES = {
    cls.__name__: cls
    for cls in (L.Conv, L.Dense, L.MaxPool, L.AvgPool, L.SumPool, L.Scale, L.Flatten, L.LIF)
}


# ----------------------------------------------------------------------------- helpers


def _atomic_write(path: pathlib.Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _to_json_bytes(obj: Any, arg: str) -> bytes:
    try:
        return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n").encode()
    except TypeError as err:
        raise TypeError(f"{arg} must be JSON-serializable: {err}") from err


def _pure_dict(params) -> dict:
    """``{layer: {name: array}}`` from an ``nnx.State``, a ``SpikingNetwork`` or a mapping."""
    if isinstance(params, nnx.Module):
        params = nnx.state(params, nnx.Param)
    if isinstance(params, nnx.State):
        params = nnx.to_pure_dict(params)
    if not isinstance(params, Mapping):
        raise TypeError(
            "params must be an nnx.State or a nested mapping of arrays, "
            f"got {type(params).__name__}"
        )
    return params


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        path = prefix + (str(k),)
        if isinstance(v, Mapping):
            out.update(_flatten(v, path))
        else:
            out[path] = v
    return out


def _path_str(path: tuple[str, ...]) -> str:
    return "/".join(path)


# ----------------------------------------------------------------------------- model config


def model_config(model) -> dict[str, Any]:
    """JSON-able description of a :class:`~svebi_jax.models.SpikingNetwork`.

    A network whose layers equal ``shallow_layers(num_classes, channels, hidden)`` is recorded
    as ``"model": "shallow"`` (with ``channels`` and ``hidden``); any other as
    ``"spiking_network"``. Both record the layer specs, ``input_shape``, ``num_classes``
    and the ``snn`` config, which is all :func:`restore_model` needs.
    """
    from svebi_jax.models import shallow_layers

    layers = tuple(model.layers)
    num_classes = int(layers[-1].features)
    cfg: dict[str, Any] = {
        "model": "spiking_network",
        "input_shape": [int(v) for v in model.input_shape],
        "num_classes": num_classes,
        "snn": dataclasses.asdict(model.config),
        "layers": [{"type": type(s).__name__, **dataclasses.asdict(s)} for s in layers],
    }
    synaptic = [s for s in layers if isinstance(s, (L.Conv, L.Dense))]
    if len(synaptic) == 4:
        channels = (synaptic[0].features, synaptic[1].features)
        hidden = synaptic[2].features
        if shallow_layers(num_classes, channels, hidden) == layers:
            cfg.update(model="shallow", channels=list(channels), hidden=int(hidden))
    return cfg


def _layers_from_config(specs) -> tuple[L.LayerSpec, ...]:
    out = []
    for spec in specs:
        spec = dict(spec)
        kind = spec.pop("type", None)
        if kind not in _LAYER_TYPES:
            raise ValueError(
                f"config: unknown layer type {kind!r}; expected one of {list(_LAYER_TYPES)}"
            )
        out.append(_LAYER_TYPES[kind](**spec))
    return tuple(out)


# ----------------------------------------------------------------------------- save / load


def save_checkpoint(
    path_dir: str | os.PathLike,
    params,
    *,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Writes ``params.msgpack``, ``config.json`` and (optionally) ``metrics.json``.

    Args:
      path_dir: checkpoint directory (created if missing; existing files are replaced).
      params: ``nnx.State`` (e.g. from :func:`svebi_jax.models.functional` or
        :func:`svebi_jax.train.fit`), a ``SpikingNetwork``, or a nested mapping
        ``{layer: {name: array}}``.
      config: JSON-serializable dict; include :func:`model_config` keys so that
        :func:`restore_model` can rebuild the network.
      metrics: optional JSON-serializable dict written to ``metrics.json``.

    Returns:
      The checkpoint directory as a ``pathlib.Path``.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict or None, got {type(metrics).__name__}")
    pure = jax.tree.map(np.asarray, _pure_dict(params))
    path = pathlib.Path(path_dir)
    path.mkdir(parents=True, exist_ok=True)
    config_bytes = _to_json_bytes(dict(config), "config")
    metrics_bytes = None if metrics is None else _to_json_bytes(dict(metrics), "metrics")
    _atomic_write(path / PARAMS_FILE, serialization.msgpack_serialize(pure))
    _atomic_write(path / CONFIG_FILE, config_bytes)
    if metrics_bytes is not None:
        _atomic_write(path / METRICS_FILE, metrics_bytes)
    return path


def _read(path_dir, name: str) -> bytes:
    path = pathlib.Path(path_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    return path.read_bytes()


def load_config(path_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads ``config.json`` of a checkpoint directory."""
    return json.loads(_read(path_dir, CONFIG_FILE))


def load_metrics(path_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads ``metrics.json`` of a checkpoint directory."""
    return json.loads(_read(path_dir, METRICS_FILE))


def load_checkpoint(path_dir: str | os.PathLike, template_params):
    """Restores saved parameters into the structure of ``template_params``.

    Args:
      path_dir: checkpoint directory holding ``params.msgpack``.
      template_params: ``nnx.State`` or nested mapping with the expected structure; its
        leaves may be arrays or ``jax.ShapeDtypeStruct`` (only shapes and dtypes are used,
        the template is not modified).

    Returns:
      A new pytree of the template's type (``nnx.State`` or nested dict) holding the saved
      arrays bit for bit.

    Raises:
      ValueError: naming the parameter path when a parameter is missing, unexpected, or has
        a different shape (both shapes given) or dtype than the template.
      FileNotFoundError: if ``params.msgpack`` does not exist.
    """
    raw = _read(path_dir, PARAMS_FILE)
    try:
        saved = serialization.msgpack_restore(raw)
    except Exception as err:  # msgpack raises several types on corrupt input
        raise ValueError(f"cannot decode {PARAMS_FILE} in {str(path_dir)!r}: {err}") from err
    if not isinstance(saved, Mapping):
        raise ValueError(f"{PARAMS_FILE} in {str(path_dir)!r} does not hold a parameter dict")
    is_state = isinstance(template_params, nnx.State)
    template = _pure_dict(template_params)
    flat_t = _flatten(template)
    flat_s = _flatten(saved)
    missing = sorted(set(flat_t) - set(flat_s))
    if missing:
        raise ValueError(
            f"checkpoint {str(path_dir)!r} is missing parameter {_path_str(missing[0])!r} "
            f"(template shape {tuple(np.shape(flat_t[missing[0]]))}); "
            f"missing: {[_path_str(p) for p in missing]}"
        )
    extra = sorted(set(flat_s) - set(flat_t))
    if extra:
        raise ValueError(
            f"checkpoint {str(path_dir)!r} has parameter {_path_str(extra[0])!r} "
            f"(shape {tuple(np.shape(flat_s[extra[0]]))}) that the template lacks; "
            f"unexpected: {[_path_str(p) for p in extra]}"
        )
    for path, t in flat_t.items():
        s = np.asarray(flat_s[path])
        if tuple(s.shape) != tuple(t.shape):
            raise ValueError(
                f"parameter {_path_str(path)!r}: checkpoint shape {tuple(s.shape)} does not fit "
                f"template shape {tuple(t.shape)}"
            )
        if np.dtype(s.dtype) != np.dtype(t.dtype):
            raise ValueError(
                f"parameter {_path_str(path)!r}: checkpoint dtype {s.dtype} does not match "
                f"template dtype {np.dtype(t.dtype)}"
            )
    restored = jax.tree.map(jnp.asarray, saved)
    if not is_state:
        return restored
    # Copy the template's Variables so that the caller's template is left untouched.
    out = jax.tree.map(lambda x: x, template_params)
    nnx.replace_by_pure_dict(out, restored)
    return out


def restore_model(path_dir: str | os.PathLike):
    """Rebuilds the saved :class:`~svebi_jax.models.SpikingNetwork` with its parameters.

    Args:
      path_dir: a checkpoint written with a :func:`model_config` description in its config.

    Returns:
      The network (``ShallowSNN`` for ``"model": "shallow"``) holding the saved parameters.

    Raises:
      ValueError: if the config names no known model or the parameters do not fit it.
    """
    from svebi_jax.models import ShallowSNN, SpikingNetwork

    cfg = load_config(path_dir)
    kind = cfg.get("model")
    try:
        snn = L.SNNConfig(**cfg.get("snn", {}))
        input_shape = tuple(int(v) for v in cfg["input_shape"])
        if kind == "shallow":
            model = ShallowSNN(
                input_shape=input_shape,
                num_classes=int(cfg["num_classes"]),
                config=snn,
                channels=tuple(int(c) for c in cfg.get("channels", (12, 64))),
                hidden=int(cfg.get("hidden", 128)),
                rngs=nnx.Rngs(0),
            )
        elif kind == "spiking_network":
            model = SpikingNetwork(
                _layers_from_config(cfg["layers"]),
                input_shape=input_shape,
                config=snn,
                rngs=nnx.Rngs(0),
            )
        else:
            raise ValueError(f"config 'model' must be 'shallow' or 'spiking_network', got {kind!r}")
    except KeyError as err:
        raise ValueError(f"config.json in {str(path_dir)!r} lacks the key {err}") from err
    state = nnx.state(model, nnx.Param)
    nnx.update(model, load_checkpoint(path_dir, state))
    return model
