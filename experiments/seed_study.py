"""How much do SVEBI's insertion/deletion scores depend on the trained model?

Trains the shallow SNN with the default ``TrainConfig`` for several seeds on ``mnist-5k`` and
scores SVEBI (aligned and stretched, per layer), SNN-Grad2D and the input-intensity baseline on
the first ``--eval-samples`` images of ``--test-data``. Writes ``seed_study.json`` to ``--out``::

    python -m experiments.seed_study --test-data idx:../shared/data/mnist --seeds 1 2
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from flax import nnx

from experiments.common.rundir import write_text
from svebi_jax import _validation as V
from svebi_jax import attribution, data, relevance, responses, train
from svebi_jax.attribution import SVEBIOptions
from svebi_jax.lasso import mu_lasso
from svebi_jax.metrics import insdel
from svebi_jax.models import ShallowSNN, functional


def score_seed(seed: int, train_ds, test_ds, mu: float) -> dict:
    cfg = train.TrainConfig(seed=seed)
    model = ShallowSNN(rngs=nnx.Rngs(seed), config=cfg.snn)
    params, _ = train.fit(model, train_ds, config=cfg, progress=False)
    apply_fn, _ = functional(model)
    acc, _ = train.evaluate(apply_fn, params, test_ds)
    resp = responses.compute_responses(apply_fn, params, train_ds)
    masks = relevance.masks_from_weights(np.asarray(mu_lasso(resp.X, resp.L, mu).W), resp.index)
    methods = {}
    for placement in ("aligned", "stretch"):
        for layer in masks:
            methods[f"SVEBI[{layer},{placement}]"] = attribution.svebi(
                apply_fn, masks, layer=layer, options=SVEBIOptions(placement=placement)
            )
    methods["SNN-Grad2D"] = attribution.grad2d(apply_fn)
    methods["trivial: input intensity"] = attribution.input_intensity()
    row = {"seed": seed, "test_accuracy": float(acc), "methods": {}}
    for name, attr_fn in methods.items():
        res = insdel.insertion_deletion(
            attr_fn,
            apply_fn,
            params,
            test_ds.images,
            pixels_per_step=28,
            substrate="zeros",
            batch_size=100,
        )
        row["methods"][name] = {
            "insertion": float(res.insertion.mean_auc),
            "deletion": float(res.deletion.mean_auc),
        }
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="mnist-5k")
    p.add_argument("--test-data", default="idx:../shared/data/mnist")
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--mu", type=float, default=2.0)
    p.add_argument("--out", default="runs/seed_study")
    a = p.parse_args(argv)
    try:  # every argument, before any work
        data.check_spec(a.data, name="--data")
        data.check_spec(a.test_data, name="--test-data")
        V.check_positive_int("--eval-samples", a.eval_samples)
        for seed in a.seeds:
            V.check_nonnegative_int("--seeds", seed)
        V.check_number("--mu", a.mu, low=0, low_open=True)
        out = V.check_out_dir("--out", a.out)
    except ValueError as err:
        p.error(str(err))
    train_ds = data.load(a.data)
    test_ds = data.subset(data.load(a.test_data, split="test"), a.eval_samples)
    rows = [score_seed(s, train_ds, test_ds, a.mu) for s in a.seeds]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "seed_study.json", json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
