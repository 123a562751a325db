"""svebi_jax.sharding on one device, and the 4-device cases in a subprocess.

The 4-device comparisons (``tests/multidevice/sharded_cases.py``) need
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (and raised collective timeouts,
see there) before JAX starts its CPU backend,
which this process has already done; they run once in a fresh interpreter (a session
fixture) and each case is reported here as its own test, with the subprocess's failure text.
"""

import ast
import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svebi_jax import sharding as S

CASES_FILE = pathlib.Path(__file__).parent / "multidevice" / "sharded_cases.py"
CASES = [
    node.name
    for node in ast.parse(CASES_FILE.read_text()).body
    if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
]


def _case_flags() -> tuple[str, ...]:
    """``FLAGS`` of the cases module, read without importing it (it would start JAX)."""
    for node in ast.parse(CASES_FILE.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "FLAGS":
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f"{CASES_FILE} defines no FLAGS")


@pytest.fixture(scope="session")
def multidevice_report(tmp_path_factory):
    """Runs the 4-device cases once; ``{case: failure text or None}``."""
    xml = tmp_path_factory.mktemp("multidevice") / "report.xml"
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", ""), *_case_flags()]).strip()
    env["JAX_PLATFORMS"] = "cpu"
    root = pathlib.Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(CASES_FILE),
            f"--junitxml={xml}",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if not xml.exists():
        pytest.fail(f"the 4-device run produced no report:\n{proc.stdout}\n{proc.stderr}")
    out = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skipped = case.find("skipped")
        out[case.get("name")] = (
            bad.text or bad.get("message")
            if bad is not None
            else "skipped"
            if skipped is not None
            else None
        )
    return out


@pytest.mark.parametrize("case", CASES)
def test_four_devices(multidevice_report, case):
    assert case in multidevice_report, f"{case} did not run in the 4-device subprocess"
    assert multidevice_report[case] is None, multidevice_report[case]


# ----------------------------------------------------------------------------- one device


def test_make_mesh_and_checks():
    mesh = S.make_mesh()
    assert mesh.axis_names == ("data",) and S.num_shards(mesh) == jax.device_count()
    assert S.check_mesh(None) is None
    with pytest.raises(TypeError, match="mesh must be None or a jax.sharding.Mesh"):
        S.check_mesh("gpu")
    with pytest.raises(ValueError, match="devices must list at least one"):
        S.make_mesh([])
    d = jax.devices()[0]
    with pytest.raises(ValueError, match="devices must be distinct"):
        S.make_mesh([d, d])


def test_pad_batch_repeats_last_row_and_masks():
    x = np.arange(6).reshape(3, 2)
    padded, mask = S.pad_batch(x, 5)
    np.testing.assert_array_equal(padded, [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0])
    p1, m1 = S.pad_batch(x.T, 4, axis=1)
    np.testing.assert_array_equal(p1, [[0, 2, 4, 4], [1, 3, 5, 5]])
    assert m1.sum() == 3
    with pytest.raises(ValueError, match="n <= size"):
        S.pad_batch(x, 2)


def test_padded_size():
    mesh = S.make_mesh()
    d = S.num_shards(mesh)
    assert S.padded_size(1, mesh) == d and S.padded_size(d + 1, mesh) == 2 * d


def test_data_parallel_matches_plain_function():
    """A per-row function with batch axes 0 and 1, a replicated argument and None inputs."""
    mesh = S.make_mesh()

    def fn(w, x, y, nothing):
        assert nothing is None
        return {"a": x @ w, "b": jnp.swapaxes(y, 0, 1).sum(-1)}, y * 2.0

    rng = np.random.default_rng(0)
    w = rng.random((3, 2), dtype=np.float32)
    x = rng.random((5, 3), dtype=np.float32)
    y = rng.random((4, 5), dtype=np.float32)  # batch on axis 1
    run = S.data_parallel(fn, mesh, in_axes=(None, 0, 1, 0), out_axes=({"a": 0, "b": 0}, 1))
    (got, y2) = run(w, x, y, None)
    np.testing.assert_allclose(np.asarray(got["a"]), x @ w, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got["b"]), y.T.sum(-1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(y2), y * 2.0)
    with pytest.raises(ValueError, match="share one batch size"):
        run(w, x, y[:, :4], None)


def test_shard_batch_refuses_uneven_batch():
    mesh = S.make_mesh()
    if S.num_shards(mesh) == 1:
        x = S.shard_batch(mesh, np.ones((3, 2)))
        assert x.shape == (3, 2)
        assert S.to_host(x).tolist() == [[1, 1]] * 3
    else:  # pragma: no cover - only with several devices
        with pytest.raises(ValueError, match="multiple of"):
            S.shard_batch(mesh, np.ones((S.num_shards(mesh) + 1, 2)))
