"""LIF dynamics against hand-computed traces and surrogate formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spyx.axn

from svebi_jax import lif


def reference_trace(current, beta, threshold, reset, steps):
    """Plain-Python LIF (independent of the library) for a constant current."""
    u, s = 0.0, 0.0
    us, ss = [], []
    for _ in range(steps):
        if reset == "subtract":
            u = beta * u + current - threshold * s
        elif reset == "subtract_then_leak":
            u = beta * (u - threshold * s) + current
        elif reset == "none":
            u = beta * u + current
        else:
            u = beta * u * (1.0 - s) + current
        s = 1.0 if u > threshold else 0.0
        us.append(u)
        ss.append(s)
    return np.array(ss), np.array(us)


def test_subtract_hand_computed_spike_steps():
    # I = 0.6, beta = 0.95, theta = 1 (paper's equation):
    # U1 = 0.6, U2 = 0.57 + 0.6 = 1.17 -> spike at step 2 (index 1);
    # U3 = 0.95*1.17 + 0.6 - 1 = 0.7115, U4 = 0.95*0.7115 + 0.6 = 1.275925 -> spike (index 3);
    # U5 = 0.95*1.275925 + 0.6 - 1 = 0.81212875, U6 = 1.3715223 -> spike (index 5).
    spikes, mem = lif.lif_scan(jnp.full((6,), 0.6), beta=0.95, threshold=1.0, reset="subtract")
    np.testing.assert_array_equal(spikes, [0, 1, 0, 1, 0, 1])
    np.testing.assert_allclose(
        mem, [0.6, 1.17, 0.7115, 1.275925, 0.81212875, 1.3715223125], rtol=1e-6
    )


def test_subtract_then_leak_hand_computed():
    # Authors' order: U <- beta*(U - S*theta) + I.
    # U1 = 0.6, U2 = 1.17 (spike), U3 = 0.95*(0.17) + 0.6 = 0.7615,
    # U4 = 0.95*0.7615 + 0.6 = 1.323425 (spike), U5 = 0.95*0.323425 + 0.6 = 0.90725375,
    # U6 = 0.95*0.90725375 + 0.6 = 1.4618910625 (spike)
    spikes, mem = lif.lif_scan(
        jnp.full((6,), 0.6), beta=0.95, threshold=1.0, reset="subtract_then_leak"
    )
    np.testing.assert_array_equal(spikes, [0, 1, 0, 1, 0, 1])
    np.testing.assert_allclose(
        mem, [0.6, 1.17, 0.7615, 1.323425, 0.90725375, 1.4618910625], rtol=1e-6
    )


def test_zero_reset_hand_computed():
    # Hard reset: after a spike the potential restarts from 0 (+ input).
    spikes, mem = lif.lif_scan(jnp.full((5,), 0.6), beta=0.95, threshold=1.0, reset="zero")
    np.testing.assert_array_equal(spikes, [0, 1, 0, 1, 0])
    np.testing.assert_allclose(mem, [0.6, 1.17, 0.6, 1.17, 0.6], rtol=1e-6)


def test_zero_reset_to_v_reset_and_no_reset_hand_computed():
    # Reset to v_r = -0.5 (NIR LIF): U1 = 0.6, U2 = 1.17 (spike), U3 = 0.95*(-0.5) + 0.6 = 0.125,
    # U4 = 0.95*0.125 + 0.6 = 0.71875, U5 = 0.95*0.71875 + 0.6 = 1.2828125 (spike).
    spikes, mem = lif.lif_scan(
        jnp.full((5,), 0.6), beta=0.95, threshold=1.0, reset="zero", v_reset=-0.5
    )
    np.testing.assert_array_equal(spikes, [0, 1, 0, 0, 1])
    np.testing.assert_allclose(mem, [0.6, 1.17, 0.125, 0.71875, 1.2828125], rtol=1e-6)
    # No reset: U[t] = 0.6 (1 - 0.95^t) / 0.05, crossing 1 at t = 2 and staying above.
    spikes, mem = lif.lif_scan(jnp.full((4,), 0.6), beta=0.95, threshold=1.0, reset="none")
    np.testing.assert_array_equal(spikes, [0, 1, 1, 1])
    np.testing.assert_allclose(mem, 12 * (1 - 0.95 ** np.arange(1, 5)), rtol=1e-6)


@pytest.mark.parametrize("reset", lif.RESET_MODES)
@pytest.mark.parametrize(
    "current,beta,threshold", [(0.6, 0.95, 1.0), (0.3, 0.8, 0.5), (1.7, 0.5, 1.0)]
)
def test_matches_reference_over_long_trace(reset, current, beta, threshold):
    spikes, mem = lif.lif_scan(
        jnp.full((40, 1), current), beta=beta, threshold=threshold, reset=reset
    )
    ref_s, ref_u = reference_trace(current, beta, threshold, reset, 40)
    np.testing.assert_array_equal(spikes[:, 0], ref_s)
    np.testing.assert_allclose(mem[:, 0], ref_u, rtol=1e-5, atol=1e-6)


def test_time_major_trailing_axes_are_independent():
    key = jax.random.key(0)
    cur = jax.random.uniform(key, (12, 3, 4, 5), maxval=1.2)
    spikes, mem = lif.lif_scan(cur, beta=0.9)
    assert spikes.shape == mem.shape == cur.shape
    s1, m1 = lif.lif_scan(cur[:, 1, 2, 3], beta=0.9)
    np.testing.assert_array_equal(spikes[:, 1, 2, 3], s1)
    np.testing.assert_allclose(mem[:, 1, 2, 3], m1)


def test_triangle_surrogate_gradient_equals_formula():
    f = lif.spike_function("triangle", threshold=1.0)
    for u in [0.3, 0.8, 1.0, 1.25, 1.9, 2.5]:
        g = jax.grad(lambda v: f(v - 1.0))(u)
        np.testing.assert_allclose(g, 0.3 * max(0.0, 1.0 - abs(u / 1.0 - 1.0)), rtol=1e-6)
    # threshold scales the half-width: 0.3 * max(0, 1 - |U/theta - 1|)
    f2 = lif.spike_function("triangle", threshold=2.0)
    g = jax.grad(lambda v: f2(v - 2.0))(2.5)
    np.testing.assert_allclose(g, 0.3 * (1 - abs(2.5 / 2.0 - 1)), rtol=1e-6)


def test_sigmoid_surrogate_gradient_equals_formula():
    k = 5.0
    f = lif.spike_function("sigmoid", slope=k)
    for x in [-1.0, -0.2, 0.0, 0.3, 2.0]:
        g = jax.grad(f)(x)
        sig = 1 / (1 + np.exp(-k * x))
        np.testing.assert_allclose(g, k * sig * (1 - sig), rtol=1e-4, atol=1e-7)


def test_surrogate_flows_through_scan():
    # One step, U = I: dS/dI is the surrogate at I - theta.
    def total_spikes(i):
        s, _ = lif.lif_scan(jnp.array([i]), beta=0.9, surrogate="triangle")
        return s.sum()

    np.testing.assert_allclose(jax.grad(total_spikes)(1.2), 0.3 * (1 - 0.2), rtol=1e-6)


def test_spyx_surrogates_are_reused():
    f = lif.spike_function("arctan")
    x = 0.3
    np.testing.assert_allclose(jax.grad(f)(x), jax.grad(spyx.axn.arctan())(x), rtol=1e-6)
    custom = spyx.axn.superspike()
    assert lif.spike_function(custom) is custom
    np.testing.assert_array_equal(f(jnp.array([-0.1, 0.0, 0.1])), [0.0, 0.0, 1.0])


def test_integrator_readout_is_potential_over_t():
    cur = jnp.arange(12.0).reshape(4, 1, 3)
    np.testing.assert_allclose(lif.integrator_readout(cur), cur.sum(0) / 4)
    leaky = lif.integrator_readout(cur, beta=0.5)
    u = np.zeros((1, 3))
    for t in range(4):
        u = 0.5 * u + np.asarray(cur[t])
    np.testing.assert_allclose(leaky, u / 4, rtol=1e-6)


def test_jit_equals_eager():
    cur = jax.random.uniform(jax.random.key(3), (10, 8), maxval=1.5)
    f = jax.jit(lambda c: lif.lif_scan(c, beta=0.95, reset="subtract_then_leak"))
    s1, m1 = f(cur)
    s2, m2 = lif.lif_scan(cur, beta=0.95, reset="subtract_then_leak")
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_allclose(m1, m2, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"beta": 1.5}, "beta"),
        ({"beta": -0.1}, "beta"),
        ({"beta": 0.9, "threshold": 0.0}, "threshold"),
        ({"beta": 0.9, "threshold": -1.0}, "threshold"),
        ({"beta": 0.9, "reset": "soft"}, "reset"),
        ({"beta": 0.9, "surrogate": "nope"}, "surrogate"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lif.lif_scan(jnp.ones((3,)), **kwargs)


def test_empty_time_axis():
    with pytest.raises(ValueError, match="currents"):
        lif.lif_scan(jnp.ones((0, 2)), beta=0.9)
