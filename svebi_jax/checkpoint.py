"""Checkpoints: parameters as msgpack, configuration and metrics as JSON (never pickle).

A checkpoint is a directory::

    DIR/params.msgpack   flax.serialization.msgpack_serialize of the pure {layer: {name: array}}
    DIR/config.json      JSON config (model description, training config, data names, ...)
    DIR/metrics.json     optional JSON metrics
    DIR/manifest.json    {"format": "svebi_jax.checkpoint/1",
                          "files": {name: {"sha256": hex, "bytes": int}}} of the files above

The model description written by :func:`model_config` and read by :func:`restore_model` is::

    {"model": "shallow" | "spiking_network", "input_shape": [H, W, C], "num_classes": K,
     "snn": {SNNConfig fields}, "layers": [{"type": "Conv", "name": ..., ...}, ...],
     "channels": [c1, c2], "hidden": h}        # the last two only for "shallow"

**Written as one unit.** :func:`save_checkpoint` writes every file into a fresh temporary
directory next to ``DIR`` and then swaps it into place (``os.rename``): a reader sees the old
checkpoint or the new one, never new parameters beside an old config. If ``DIR`` exists it
may only hold checkpoint files (it is replaced as a whole), so nothing else is ever deleted.

**Files that do not belong together are refused.** Every read (:func:`load_checkpoint`,
:func:`load_config`, :func:`load_metrics`) checks the file against the manifest's SHA-256; a
file replaced by hand, truncated, or missing gives a ``ValueError`` naming it. Checkpoints
written before the manifest existed (no ``manifest.json``) load with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import warnings
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
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "svebi_jax.checkpoint/1"
CHECKPOINT_FILES = (PARAMS_FILE, CONFIG_FILE, METRICS_FILE, MANIFEST_FILE)

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
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def check_checkpoint_dir(path_dir: str | os.PathLike, *, name: str = "path_dir") -> pathlib.Path:
    """Checks that a checkpoint can be written to ``path_dir`` (nothing is created).

    Raises:
      ValueError: ``path_dir`` is empty, an existing file, below a file, not writable, or an
        existing directory holding other files than a checkpoint's (saving replaces the
        directory as a whole and never deletes anything else).
    """
    from svebi_jax._validation import check_out_dir

    path = check_out_dir(name, path_dir)
    if path.is_dir():
        other = sorted(p.name for p in path.iterdir() if p.name not in CHECKPOINT_FILES)
        if other:
            raise ValueError(
                f"{name} {str(path)!r} holds files that are not part of a checkpoint "
                f"({other[:5]}); choose a new or empty directory"
            )
    return path


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
    """Writes ``params.msgpack``, ``config.json``, (optionally) ``metrics.json`` and the
    manifest, as one unit (see the module docstring).

    Args:
      path_dir: checkpoint directory: new, empty, or an earlier checkpoint (replaced whole).
      params: ``nnx.State`` (e.g. from :func:`svebi_jax.models.functional` or
        :func:`svebi_jax.train.fit`), a ``SpikingNetwork``, or a nested mapping
        ``{layer: {name: array}}``.
      config: JSON-serializable dict; include :func:`model_config` keys so that
        :func:`restore_model` can rebuild the network.
      metrics: optional JSON-serializable dict written to ``metrics.json``.

    Returns:
      The checkpoint directory as a ``pathlib.Path``.

    Raises:
      TypeError: ``config``/``metrics`` not JSON-serializable dicts.
      ValueError: a ``path_dir`` that cannot hold a checkpoint (see
        :func:`check_checkpoint_dir`). Nothing is written in either case.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict or None, got {type(metrics).__name__}")
    path = check_checkpoint_dir(path_dir)
    payloads = {
        PARAMS_FILE: serialization.msgpack_serialize(jax.tree.map(np.asarray, _pure_dict(params))),
        CONFIG_FILE: _to_json_bytes(dict(config), "config"),
    }
    if metrics is not None:
        payloads[METRICS_FILE] = _to_json_bytes(dict(metrics), "metrics")
    manifest = {
        "format": MANIFEST_FORMAT,
        "files": {n: {"sha256": _sha256(b), "bytes": len(b)} for n, b in payloads.items()},
    }
    payloads[MANIFEST_FILE] = _to_json_bytes(manifest, "manifest")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        for name, payload in payloads.items():
            with open(tmp / name, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _swap_into_place(new: pathlib.Path, path: pathlib.Path) -> None:
    """Renames directory ``new`` to ``path``, replacing an existing ``path`` as a whole."""
    if not path.exists():
        os.rename(new, path)
        return
    old = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
    os.rmdir(old)
    os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(old, path)  # put the previous checkpoint back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _manifest(path_dir) -> dict | None:
    path = pathlib.Path(path_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_bytes())
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError(f"unknown format {manifest.get('format')!r}")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"checkpoint manifest {str(path)!r} is malformed: {err}") from err
    return files


def _read(path_dir, name: str) -> bytes:
    path = pathlib.Path(path_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    raw = path.read_bytes()
    files = _manifest(path_dir)
    if files is None:
        warnings.warn(
            f"checkpoint {str(path_dir)!r} has no {MANIFEST_FILE} (written before svebi_jax "
            "0.1's manifests): its files cannot be checked to belong together",
            UserWarning,
            stacklevel=3,
        )
        return raw
    entry = files.get(name)
    if entry is None:
        raise ValueError(
            f"checkpoint file {str(path)!r} is not listed in its {MANIFEST_FILE}: it does not "
            "belong to this checkpoint"
        )
    if len(raw) != entry.get("bytes") or _sha256(raw) != entry.get("sha256"):
        raise ValueError(
            f"checkpoint file {str(path)!r} does not match its {MANIFEST_FILE} (SHA-256 or size "
            "differs): it was replaced, truncated or written by another save; the checkpoint's "
            "files do not belong together"
        )
    return raw


def _read_json(path_dir, name: str) -> dict[str, Any]:
    raw = _read(path_dir, name)
    path = pathlib.Path(path_dir) / name
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint file {str(path)!r} is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(
            f"checkpoint file {str(path)!r} must hold a JSON object, got {type(value).__name__}"
        )
    return value


def load_config(path_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads ``config.json`` of a checkpoint directory (checked against its manifest).

    Raises:
      FileNotFoundError: no ``config.json``.
      ValueError: naming the file, when it is not a JSON object or does not belong to the
        checkpoint.
    """
    return _read_json(path_dir, CONFIG_FILE)


def load_metrics(path_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads ``metrics.json`` of a checkpoint directory (checked against its manifest)."""
    return _read_json(path_dir, METRICS_FILE)


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
            _check_class_count(path_dir, path, s.shape, tuple(t.shape))
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


def _check_class_count(path_dir, path, saved_shape, template_shape) -> None:
    """Names a class-count mismatch (readout of ``K`` saved classes vs. the template's)."""
    if not (pathlib.Path(path_dir) / CONFIG_FILE).is_file():
        return
    saved_k = load_config(path_dir).get("num_classes")
    if (
        isinstance(saved_k, int)
        and saved_shape
        and template_shape
        and saved_shape[-1] == saved_k
        and template_shape[-1] != saved_k
        and saved_shape[:-1] == template_shape[:-1]
    ):
        raise ValueError(
            f"checkpoint {str(path_dir)!r} was saved for a model with {saved_k} classes "
            f"(config.json num_classes), but the model loading it has {template_shape[-1]} "
            f"(readout parameter {_path_str(path)!r}: checkpoint shape {tuple(saved_shape)}, "
            f"model shape {template_shape}); build the model with num_classes={saved_k}"
        )


def restore_model(path_dir: str | os.PathLike):
    """Rebuilds the saved :class:`~svebi_jax.models.SpikingNetwork` with its parameters.

    Args:
      path_dir: a checkpoint written with a :func:`model_config` description in its config.

    Returns:
      The network (``ShallowSNN`` for ``"model": "shallow"``) holding the saved parameters.

    Raises:
      FileNotFoundError: a missing ``config.json`` or ``params.msgpack``.
      ValueError: naming the file and field, when ``config.json`` is malformed (not JSON, a
        missing or invalid field, an unknown model) or its files do not belong together,
        and naming the parameter when the parameters do not fit the model.
    """
    from svebi_jax.models import ShallowSNN, SpikingNetwork

    cfg = load_config(path_dir)
    where = f"{str(pathlib.Path(path_dir) / CONFIG_FILE)!r}"

    def field(name: str, parse, default=_MISSING):
        if name not in cfg:
            if default is _MISSING:
                raise ValueError(f"checkpoint config {where} lacks the field {name!r}")
            return default
        try:
            return parse(cfg[name])
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(
                f"checkpoint config {where}: field {name!r} is invalid ({cfg[name]!r}): {err}"
            ) from err

    kind = field("model", str)
    if kind not in ("shallow", "spiking_network"):
        raise ValueError(
            f"checkpoint config {where}: field 'model' must be 'shallow' or 'spiking_network', "
            f"got {kind!r}"
        )
    snn = field("snn", lambda d: L.SNNConfig(**d), L.SNNConfig())
    input_shape = field("input_shape", _int_tuple(3))
    if kind == "shallow":
        model = field(
            "num_classes",
            lambda k: ShallowSNN(
                input_shape=input_shape,
                num_classes=int(k),
                config=snn,
                channels=field("channels", _int_tuple(2), (12, 64)),
                hidden=field("hidden", int, 128),
                rngs=nnx.Rngs(0),
            ),
        )
    else:
        model = field(
            "layers",
            lambda specs: SpikingNetwork(
                _layers_from_config(specs), input_shape=input_shape, config=snn, rngs=nnx.Rngs(0)
            ),
        )
    state = nnx.state(model, nnx.Param)
    nnx.update(model, load_checkpoint(path_dir, state))
    return model


_MISSING = object()


def _int_tuple(n: int):
    def parse(value) -> tuple[int, ...]:
        if not isinstance(value, list | tuple) or len(value) != n:
            raise ValueError(f"expected a list of {n} ints")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
            raise ValueError(f"expected {n} positive ints")
        return tuple(int(v) for v in value)

    return parse
