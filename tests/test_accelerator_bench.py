"""benchmarks/accelerator_svgg19.py: its FLOP count and a CPU run at the smoke size."""

import importlib.util
import json
import pathlib

import pytest

from svebi_jax import layers as L
from svebi_jax.models import vgg

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "accelerator_svgg19.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("accelerator_svgg19", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flop_count_by_hand(bench):
    layers = (
        L.Conv("c1", 4, 3, padding=1), L.LIF(), L.MaxPool(2),
        L.Conv("c2", 6, 3, padding=1), L.LIF(), L.Flatten(),
        L.Dense("d1", 5), L.LIF(), L.Dense("out", 3),
    )  # fmt: skip
    t = 7
    c1 = 2 * 9 * 8 * 8 * 2 * 4  # 8x8 map, 2 input channels, 4 filters: computed once
    c2 = 2 * 9 * 4 * 4 * 4 * 6  # after the pool: 4x4, 4 -> 6
    d1 = 2 * (4 * 4 * 6) * 5
    out = 2 * 5 * 3
    assert bench.forward_flops(layers, (8, 8, 2), t) == c1 + t * (c2 + d1 + out)
    # VGG19 at 224²: conv1_1 once (0.173 GFLOP) + 25 x 39.09 GFLOP
    full = bench.forward_flops(vgg.svgg19_layers(1000), (224, 224, 3), 25)
    assert full / 1e9 == pytest.approx(977.44, abs=0.01)


@pytest.mark.slow  # a benchmark script end to end (~45 s on 2 cores); `pytest -m slow`
def test_smoke_run_writes_every_row(bench, tmp_path):
    out = tmp_path / "accel.json"
    r = bench.run(["--smoke", "--out", str(out), "--repeats", "1"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    rows = {(row["kind"], row["dtype"], row["devices"]): row for row in r["rows"]}
    assert set(rows) == {(k, d, 1) for k in ("train", "extract") for d in ("f32", "bf16")}
    fwd = r["forward_gflop_per_image"] * 1e9
    for (kind, _, _), row in rows.items():
        assert "error" not in row, row
        assert row["img_per_s"] > 0 and row["executable_bytes"] > 0
        per_image = (3 if kind == "train" else 1) * fwd
        assert row["achieved_tflop_per_s"] == pytest.approx(row["img_per_s"] * per_image / 1e12)
        if "xla_flops_per_call" in row:  # XLA's own count agrees with the derived one
            batch = r["config"]["batch_size"]
            assert row["xla_flops_per_call"] / batch == pytest.approx(per_image, rel=0.2)
    assert rows[("train", "f32", 1)]["loss_finite"]
    assert rows[("extract", "f32", 1)]["responses_shape"] == [8, 344]  # 4 batches of 2
