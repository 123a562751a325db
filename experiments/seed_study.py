"""How much do SVEBI's insertion/deletion scores depend on the trained model?

Trains the shallow SNN with the default ``TrainConfig`` for several seeds on ``mnist-5k`` and
scores SVEBI (aligned and stretched, per layer), SNN-Grad2D and the input-intensity baseline on
the first ``--eval-samples`` images of ``--test-data``. Writes ``seed_study.json`` to ``--out``::

    python experiments/seed_study.py --test-data idx:../shared/data/mnist --seeds 1 2
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from svebi_jax import data, relevance, responses, train
from svebi_jax.baselines import grad, trivial
from svebi_jax.heatmaps import svebi_heatmaps
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
    rel = relevance.relevant_filters(np.asarray(mu_lasso(resp.X, resp.L, mu).W), resp.index)
    masks = relevance.relevance_masks(rel, resp.index, resp.L.shape[1])
    images = jnp.asarray(test_ds.images)
    out = apply_fn(params, images, record="mean")
    cls = jnp.argmax(out.logits, -1)
    maps = {}
    for placement in ("aligned", "stretch"):
        hm = svebi_heatmaps(
            out.spikes,
            cls,
            masks,
            geometry=model.geometry,
            image_shape=(28, 28),
            placement=placement,
        )
        maps |= {f"SVEBI[{k},{placement}]": v for k, v in hm.items()}
    maps["SNN-Grad2D"] = jnp.concatenate(
        [
            grad.grad2d(apply_fn, params, images[i : i + 100], num_steps=cfg.snn.num_steps)
            for i in range(0, len(images), 100)
        ]
    )
    maps["trivial: input intensity"] = trivial.input_intensity(images)
    logits_fn = jax.jit(lambda x: apply_fn(params, x).logits)
    row = {"seed": seed, "test_accuracy": float(acc), "methods": {}}
    for name, m in maps.items():
        row["methods"][name] = {
            mode: float(
                insdel.insertion_deletion(
                    logits_fn, images, m, mode=mode, step=28, substrate="zeros"
                ).mean_auc
            )
            for mode in ("insertion", "deletion")
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
    train_ds = data.load(a.data)
    test_ds = data.subset(data.load(a.test_data, split="test"), a.eval_samples)
    rows = [score_seed(s, train_ds, test_ds, a.mu) for s in a.seeds]
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seed_study.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
