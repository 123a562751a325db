"""Filter ablation (Fig. 3a) alone, from a checkpoint, with as many random draws as wanted.

The main command runs the same ablation as one of its stages; this script reruns only that
stage, e.g. to see how the random-ablation baseline settles as the number of draws grows::

    python -m experiments.ablation_study --checkpoint runs/mnist_shallow/checkpoint \\
        --test-data idx:../shared/data/mnist --draws 10

Writes ``ablation_study.json`` (one row per μ: relevant, random mean, random sd) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import numpy as np

from experiments.common.rundir import write_text
from svebi_jax import _validation as V
from svebi_jax import checkpoint, data
from svebi_jax.metrics import ablation
from svebi_jax.models import functional
from svebi_jax.relevance import fit_relevance


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="directory written by the main command")
    p.add_argument("--data", default="mnist-5k", help="training data (for the responses X, L)")
    p.add_argument("--test-data", default="idx:../shared/data/mnist")
    p.add_argument("--samples", type=int, default=0, help="test images (0 = all)")
    p.add_argument("--draws", type=int, default=10, help="random draws per μ")
    p.add_argument("--mu-max", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/ablation_study")
    a = p.parse_args(argv)
    try:  # every argument, before any work
        data.check_spec(a.data, name="--data")
        data.check_spec(a.test_data, name="--test-data")
        V.check_nonnegative_int("--samples (0 = all)", a.samples)
        V.check_positive_int("--draws", a.draws)
        V.check_positive_int("--mu-max", a.mu_max)
        V.check_nonnegative_int("--seed", a.seed)
        out = V.check_out_dir("--out", a.out)
        if not (pathlib.Path(a.checkpoint) / "config.json").is_file():
            raise ValueError(f"--checkpoint {a.checkpoint!r} is not a checkpoint directory")
    except ValueError as err:
        p.error(str(err))

    model = checkpoint.restore_model(a.checkpoint)
    apply_fn, params = functional(model)
    train_ds = data.load(a.data, split="train", seed=a.seed)
    test_ds = data.load(a.test_data, split="test", seed=a.seed)
    if 0 < a.samples < len(test_ds):
        test_ds = data.subset(test_ds, a.samples)
    mus = np.arange(1, a.mu_max + 1, dtype=np.float32)
    path = fit_relevance(apply_fn, params, train_ds, mus)
    stacked = {k: np.asarray(v) for k, v in path.masks.items()}
    t0 = time.perf_counter()
    abl = ablation.ablation_curve(
        apply_fn,
        params,
        test_ds.images,
        test_ds.labels,
        stacked,
        mu=mus,
        key=jax.random.key(a.seed),
        n_random=a.draws,
    )
    seconds = time.perf_counter() - t0
    rows = [
        {"mu": float(m), "relevant": float(r), "random": float(x), "random_std": float(s)}
        for m, r, x, s in zip(abl.mu, abl.relevant, abl.random, abl.random_std, strict=True)
    ]
    below = int(np.sum(abl.relevant < abl.random))
    result = {
        "checkpoint": a.checkpoint,
        "test_data": a.test_data,
        "n_images": len(test_ds),
        "draws": a.draws,
        "full": abl.full,
        "relevant_below_random": below,
        "n_mu": len(rows),
        "seconds": round(seconds, 1),
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "ablation_study.json", json.dumps(result, indent=1))
    print(
        f"relevant < random at {below} of {len(rows)} μ ({len(test_ds)} images, "
        f"{a.draws} draws, {seconds:.0f} s); full model {abl.full:.4f}"
    )
    return result


if __name__ == "__main__":
    main()
