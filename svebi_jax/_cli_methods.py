"""The explanation methods of the ``svebi`` command line: one registry, name → factory.

Each entry builds an attribution function ``attr_fn(params, images, target) -> [B, H, W]``
with a factory of :mod:`svebi_jax.attribution` (the library's one public way to get a
method); the command line adds nothing to the maps. Methods whose factory this version of
the library does not have (``gradcam``, ``lrp``, ``tsa`` arrive one by one) are simply not
offered.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
from collections.abc import Callable
from typing import Any

from svebi_jax import attribution


@dataclasses.dataclass(frozen=True)
class MethodContext:
    """What a factory may need: the model, its conv layers and the method flags.

    Attributes:
      apply_fn: the model's ``apply_fn``.
      conv_layers: the model's spiking conv layers, input to output.
      layer: ``--layer`` (``None``: the method's default).
      relevance: the loaded ``Relevance`` (``--relevance``) or ``None``.
      path_steps: ``--path-steps`` (integrated gradients' path points).
      seed: ``--seed`` (the random map's key).
    """

    apply_fn: Any
    conv_layers: tuple[str, ...]
    layer: str | None = None
    relevance: Any = None
    path_steps: int = 50
    seed: int = 0


def _deepest(ctx: MethodContext) -> str:
    return ctx.layer if ctx.layer is not None else ctx.conv_layers[-1]


def _svebi(ctx: MethodContext):
    if ctx.relevance is None:
        raise ValueError("--relevance FILE is required by the method 'svebi' (svebi relevance)")
    return ctx.relevance.attribution(layer=ctx.layer or attribution.COMBINED)


def _ig2d(ctx: MethodContext):
    return attribution.integrated_gradients(ctx.apply_fn, path_steps=ctx.path_steps)


def _random(ctx: MethodContext):
    import jax

    return attribution.random_map(jax.random.key(ctx.seed))


def _optional(name: str) -> Callable[[MethodContext], Any] | None:
    """A factory of :mod:`svebi_jax.attribution` that takes ``apply_fn`` (and ``layer=``
    where it has one), when this version of the library has it."""
    factory = getattr(attribution, name, None)
    if factory is None:
        return None
    takes_layer = "layer" in inspect.signature(factory).parameters
    if takes_layer:
        _LAYERED.add(name)

    def build(ctx: MethodContext):
        if takes_layer:
            return factory(ctx.apply_fn, layer=_deepest(ctx))
        return factory(ctx.apply_fn)

    return build


#: Optional methods whose factory takes ``layer=`` (filled by :func:`_optional`).
_LAYERED: set[str] = set()


def _registry() -> dict[str, Callable[[MethodContext], Any]]:
    methods: dict[str, Callable[[MethodContext], Any]] = {
        "svebi": _svebi,
        "grad2d": lambda ctx: attribution.grad2d(ctx.apply_fn),
        "ig2d": _ig2d,
        "sam": lambda ctx: attribution.sam(ctx.apply_fn, layer=_deepest(ctx)),
    }
    for name in ("gradcam", "lrp", "tsa"):
        build = _optional(name)
        if build is not None:
            methods[name] = build
    methods |= {
        "random": _random,
        "intensity": lambda ctx: attribution.input_intensity(),
        "gaussian": lambda ctx: attribution.centered_gaussian(),
    }
    return methods


#: ``{name: factory(MethodContext) -> attr_fn}``: every method the command line offers.
METHODS: dict[str, Callable[[MethodContext], Any]] = _registry()

#: One line per method for ``--help``.
DESCRIPTIONS = {
    "svebi": "SVEBI: relevant filters' spike maps (needs --relevance; --layer or combined)",
    "grad2d": "SNN-Grad2D: |d logit / d input| summed over time",
    "ig2d": "SNN-IG2D: integrated gradients along --path-steps points",
    "sam": "spike activation map of --layer (default: the deepest conv layer)",
    "gradcam": "Grad-CAM of --layer (default: the deepest conv layer)",
    "lrp": "layer-wise relevance propagation",
    "tsa": "temporal spike attribution",
    "random": "uniform noise (a reference; --seed)",
    "intensity": "the image itself (a reference)",
    "gaussian": "a centred Gaussian bump (a reference)",
}

#: Methods that explain a class (the others ignore ``--target``).
CLASS_AWARE = frozenset({"svebi", "grad2d", "ig2d", "gradcam", "lrp", "tsa"})


def layer_of(ctx: MethodContext, name: str) -> str | None:
    """The layer method ``name`` explains: ``--layer`` or its default (``None``: the method
    has no layer, it explains the input)."""
    if name == "svebi":
        return ctx.layer or attribution.COMBINED
    if name == "sam" or (name in METHODS and name in _LAYERED):
        return _deepest(ctx)
    return None


def methods_help() -> str:
    """The ``--method`` choices with one line each."""
    return "\n".join(f"  {n:<10} {DESCRIPTIONS.get(n, '')}" for n in METHODS)


def check_method_flags(methods, *, layer, relevance, conv_layers) -> None:
    """Flag combinations the chosen methods need, checked before any work."""
    if "svebi" in methods and relevance is None:
        raise ValueError("--relevance FILE is required by the method 'svebi' (svebi relevance)")
    allowed = conv_layers + ((attribution.COMBINED,) if "svebi" in methods else ())
    if layer is not None and layer not in allowed:
        raise ValueError(f"--layer must be one of {allowed} for this model, got {layer!r}")


def load_relevance(path, model):
    """``--relevance FILE`` (:meth:`svebi_jax.relevance.Relevance.load`), checked against and
    attached to ``model``'s network (other conv layers, widths or classes are refused)."""
    from svebi_jax.relevance import Relevance

    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"--relevance {str(p)!r} is not a file (write one with svebi relevance)")
    try:
        return Relevance.load(p, apply_fn=model.apply_fn, params=model.params)
    except ValueError as err:
        raise ValueError(f"--relevance {str(p)!r}: {err}") from None


def build(name: str, ctx: MethodContext):
    """``attr_fn`` of method ``name`` (one of :data:`METHODS`)."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name](ctx)
