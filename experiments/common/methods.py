"""The explanation methods of Table 1, with structured keys instead of parsed names.

A :class:`MethodKey` says what a row is (``method``, ``layer``, ``placement``, ``variant``);
its :attr:`~MethodKey.label` is the row's name in reports and ``results.json``
(``"SVEBI[conv1,aligned]"``, ``"SNN-Grad2D"``, ``"SAM[conv2]"``, ``"Grad-CAM[conv2]"``,
``"LRP"``, ``"TSA-S"``, ``"trivial: random"``).
Code asks the key (``key.method == "SVEBI"``, ``key.placement == "stretch"``), never the label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax

from svebi_jax import attribution
from svebi_jax.attribution import COMBINED, AttrFn, SVEBIOptions

SVEBI = "SVEBI"
GRAD2D = "SNN-Grad2D"
IG2D = "SNN-IG2D"
SAM = "SAM"
GRADCAM = "Grad-CAM"
LRP = "LRP"
TSA = "TSA"
TRIVIAL = "trivial"


@dataclasses.dataclass(frozen=True)
class MethodKey:
    """One row of the evaluation tables.

    Attributes:
      method: ``"SVEBI"``, ``"SNN-Grad2D"``, ``"SNN-IG2D"``, ``"SAM"``, ``"Grad-CAM"``,
        ``"LRP"``, ``"TSA"`` or ``"trivial"``.
      layer: the conv layer (``"combined"`` for SVEBI's fused map; SAM's and Grad-CAM's
        layer), or ``None``.
      placement: SVEBI's ``"aligned"``/``"stretch"``, or ``None``.
      variant: a trivial map's name (``"random"``, ``"input intensity"``,
        ``"centred Gaussian"``), TSA's ``"S"``/``"NS"``, or ``None``.
    """

    method: str
    layer: str | None = None
    placement: str | None = None
    variant: str | None = None

    @property
    def label(self) -> str:
        if self.method == SVEBI:
            return f"SVEBI[{self.layer},{self.placement}]"
        if self.method in (SAM, GRADCAM):
            return f"{self.method}[{self.layer}]"
        if self.method == TSA:
            return f"TSA-{self.variant}"
        if self.method == TRIVIAL:
            return f"trivial: {self.variant}"
        return self.method

    @property
    def is_svebi(self) -> bool:
        return self.method == SVEBI

    @property
    def is_trivial(self) -> bool:
        return self.method == TRIVIAL


def table_methods(
    apply_fn,
    masks: Mapping[str, jax.Array],
    *,
    conv_layers: Sequence[str],
    seed: int,
    path_steps: int,
    placements: Sequence[str] = ("aligned", "stretch"),
    svebi_layers: Sequence[str] | None = None,
    snn_methods: bool = False,
    mesh=None,
) -> dict[MethodKey, AttrFn]:
    """Every method of Table 1 as an attribution function, in the table's row order.

    SVEBI per layer (``svebi_layers``, default every layer of ``masks``), fused
    (``"combined"``, always over every layer of ``masks``) and per placement (rows sorted by
    label);
    SNN-Grad2D; SNN-IG2D with ``path_steps`` path points; SAM per conv layer
    (receptive-field-aligned, like SVEBI); with ``snn_methods`` the other SNN-specific
    methods: SNN Grad-CAM per conv layer (:func:`svebi_jax.attribution.gradcam`, the
    paper's channel weights summed over positions and steps, aligned), spike LRP-ε
    (:func:`svebi_jax.attribution.lrp`, ε = 1e-6) and TSA-S and TSA-NS
    (:func:`svebi_jax.attribution.tsa`), each at its defaults (they need a
    :func:`svebi_jax.models.functional` spiking model); and three trivial maps (uniform
    noise from ``seed``, the image itself, a centred Gaussian). ``mesh``: the gradient
    baselines' and the SNN methods' maps are computed data-parallel over it
    (:func:`svebi_jax.attribution.grad2d`).
    """
    layers = tuple(masks) if svebi_layers is None else tuple(svebi_layers)
    unknown = [layer for layer in layers if layer not in masks]
    if unknown:
        raise ValueError(f"svebi_layers: unknown layers {unknown}; masks has {list(masks)}")
    svebi = [MethodKey(SVEBI, layer, p) for p in placements for layer in (*layers, COMBINED)]
    methods: dict[MethodKey, AttrFn] = {}
    for key in sorted(svebi, key=lambda k: k.label):  # the row order of earlier reports
        methods[key] = attribution.svebi(
            apply_fn, masks, layer=key.layer, options=SVEBIOptions(placement=key.placement)
        )
    methods[MethodKey(GRAD2D)] = attribution.grad2d(apply_fn, mesh=mesh)
    methods[MethodKey(IG2D)] = attribution.integrated_gradients(
        apply_fn, path_steps=path_steps, mesh=mesh
    )
    for layer in conv_layers:
        methods[MethodKey(SAM, layer)] = attribution.sam(apply_fn, layer=layer)
    if snn_methods:
        methods.update(snn_specific_methods(apply_fn, conv_layers=conv_layers, mesh=mesh))
    methods[MethodKey(TRIVIAL, variant="random")] = attribution.random_map(jax.random.key(seed))
    methods[MethodKey(TRIVIAL, variant="input intensity")] = attribution.input_intensity()
    methods[MethodKey(TRIVIAL, variant="centred Gaussian")] = attribution.centered_gaussian()
    return methods


def snn_specific_methods(
    apply_fn, *, conv_layers: Sequence[str], mesh=None
) -> dict[MethodKey, AttrFn]:
    """SNN Grad-CAM per conv layer, spike LRP-ε, TSA-S and TSA-NS, in that order, each from
    its public factory at its defaults (:func:`table_methods`' ``snn_methods``)."""
    methods: dict[MethodKey, AttrFn] = {}
    for layer in conv_layers:
        methods[MethodKey(GRADCAM, layer)] = attribution.gradcam(apply_fn, layer=layer, mesh=mesh)
    methods[MethodKey(LRP)] = attribution.lrp(apply_fn, mesh=mesh)
    for variant in ("s", "ns"):
        methods[MethodKey(TSA, variant=variant.upper())] = attribution.tsa(
            apply_fn, variant=variant, mesh=mesh
        )
    return methods
