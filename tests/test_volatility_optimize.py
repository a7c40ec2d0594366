"""The bounded optimiser (``marginlab.models.volatility.optimize``) on problems with known solutions.

Closed forms and scipy's SLSQP as references; the helpers (projected direction, backtracking,
basin merging, Cholesky inverse) against their definitions. Also run in pure-Python mode.
"""

import numpy as np
import pytest
from marginlab.models._numba import njit
from marginlab.models.volatility import optimize as opt
from scipy.optimize import minimize


@njit(cache=True)
def _quadratic(x, data, g):
    """f = sum w_i (x_i - t_i)^2, data = (t, w)."""
    t, w = data
    f = 0.0
    for i in range(x.size):
        f += w[i] * (x[i] - t[i]) ** 2
        g[i] = 2.0 * w[i] * (x[i] - t[i])
    return f


@njit(cache=True)
def _rosenbrock(x, data, g):
    a = data[0]
    f = (a - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2
    g[0] = -2.0 * (a - x[0]) - 400.0 * x[0] * (x[1] - x[0] ** 2)
    g[1] = 200.0 * (x[1] - x[0] ** 2)
    return f


@njit(cache=True)
def _double_well(x, data, g):
    """f = (x^2 - 1)^2 + 0.1 x: two minima, near -1 (lower) and +1."""
    f = (x[0] ** 2 - 1.0) ** 2 + 0.1 * x[0]
    g[0] = 4.0 * x[0] * (x[0] ** 2 - 1.0) + 0.1
    return f


QUAD = opt.BoundedProblem("test_quadratic", _quadratic)


def test_box_only_optimum_is_the_clipped_target():
    t, w = np.array([0.5, 3.0, -2.0]), np.array([1.0, 2.0, 0.5])
    res = QUAD.minimize(np.zeros(3), (t, w), np.full(3, -1.0), np.full(3, 1.0), tol=1e-10)
    assert res.converged
    np.testing.assert_allclose(res.x, [0.5, 1.0, -1.0], atol=1e-8)


def test_linear_constraint_optimum_equals_slsqp():
    """min sum w (x - t)^2 on [0, 1]^3 with x1 + 0.5 x2 + x3 <= 1 (the target violates it)."""
    t, w = np.array([0.3, 0.6, 0.8]), np.array([1.0, 3.0, 2.0])
    c = np.array([0.0, 1.0, 0.5, 1.0])
    # variable 0 is free and unconstrained: a 4-vector with the constraint on 1..3
    t4, w4 = np.r_[0.2, t], np.r_[1.0, w]
    lower, upper = np.zeros(4), np.ones(4)
    res = QUAD.minimize(np.full(4, 0.1), (t4, w4), lower, upper, c, 3, tol=1e-12)
    ref = minimize(lambda x: np.sum(w4 * (x - t4) ** 2), np.full(4, 0.1), jac=lambda x: 2 * w4 * (x - t4),
                   method="SLSQP", bounds=list(zip(lower, upper, strict=True)),
                   constraints=[{"type": "ineq", "fun": lambda x: 1.0 - c @ x, "jac": lambda x: -c}],
                   options={"ftol": 1e-14, "maxiter": 500})
    assert res.converged and c @ res.x == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-7)
    assert res.fun == pytest.approx(ref.fun, rel=1e-9)


def test_constraint_inactive_gives_the_interior_optimum():
    t, w = np.array([0.1, 0.2, 0.3]), np.ones(3)
    res = QUAD.minimize(np.full(3, 0.5), (t, w), np.zeros(3), np.ones(3), np.array([0.0, 1.0, 1.0]), 2, tol=1e-12)
    assert res.converged
    np.testing.assert_allclose(res.x, t, atol=1e-9)


def test_rosenbrock_in_a_box():
    problem = opt.BoundedProblem("test_rosenbrock", _rosenbrock)
    res = problem.minimize(np.array([-1.2, 1.0]), (1.0,), np.full(2, -5.0), np.full(2, 5.0), tol=1e-12,
                           max_iter=500)
    assert res.converged
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-6)


def test_multi_start_merges_runs_into_known_basins():
    """Three starts on a double well: the third start lies in the first one's basin and stops there early."""
    problem = opt.BoundedProblem("test_double_well", _double_well)
    starts = np.array([[-0.5], [0.6], [-0.45]])
    args = ((), np.array([-3.0]), np.array([3.0]))
    merged = problem.multi_start(starts, *args, tol=1e-12, merge_tol=1e-1)
    full = problem.multi_start(starts, *args, tol=1e-12, merge_tol=0.0)
    roots = np.sort(np.roots([4.0, 0.0, -4.0, 0.1]).real)  # f' = 4x^3 - 4x + 0.1: minima at the outer roots
    assert merged[0].x[0] == pytest.approx(roots[0], abs=1e-7) and merged[1].x[0] == pytest.approx(roots[2], abs=1e-7)
    np.testing.assert_array_equal(merged[2].x, merged[0].x)  # stopped in the first optimum's basin
    assert merged[2].iterations < full[2].iterations
    assert full[2].x[0] == pytest.approx(merged[0].x[0], abs=1e-8)


def test_bad_constraint_is_rejected():
    with pytest.raises(ValueError, match="eliminated variable 2 needs constraint"):
        QUAD.minimize(np.zeros(3), (np.zeros(3), np.ones(3)), np.zeros(3), np.ones(3), np.array([0, 1.0, 0.5]), 2)
    with pytest.raises(ValueError, match="needs the index of the variable eliminated"):
        QUAD.minimize(np.zeros(3), (np.zeros(3), np.ones(3)), np.zeros(3), np.ones(3), np.array([0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="must have shape"):
        QUAD.minimize(np.zeros(3), (np.zeros(3), np.ones(3)), np.zeros(2), np.ones(3))


def test_spd_inverse_matches_numpy_and_rejects_indefinite():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 5))
    m = a @ a.T + 0.1 * np.eye(5)
    out = np.empty((5, 5))
    assert opt.spd_inverse(m, out)
    np.testing.assert_allclose(out, np.linalg.inv(m), rtol=1e-10)
    assert not opt.spd_inverse(np.diag([1.0, -1.0, 2.0]), np.empty((3, 3)))


def test_backtrack_factor_is_the_minimiser_of_the_interpolating_quadratic():
    # phi(s) = f + slope s + c s^2 has its minimum at -slope / (2 c); the factor is that, kept in [0.1, 0.5]
    f, slope = 10.0, -4.0
    for c, expected in ((10.0, 0.2), (100.0, 0.1), (5.0, 0.4), (2.5, 0.5)):
        assert opt._backtrack_factor(f, f + slope + c, slope) == pytest.approx(expected, rel=1e-15)
    assert opt._backtrack_factor(f, float("inf"), slope) == 0.5
    assert opt._backtrack_factor(f, float("nan"), slope) == 0.5


def test_merged_with_finds_a_known_optimum_within_the_scaled_distance():
    known = np.array([[0.5, 0.10, 0.85], [0.2, 0.01, 0.95]])
    known_f = np.array([100.0, 99.0])
    x = known[0] * 1.004  # 0.4% from the first optimum in every component, objective not below it
    assert opt._merged_with(x, 100.5, known, known_f, 2, 1e-2) == 0
    assert opt._merged_with(x, 100.5, known, known_f, 2, 3e-3) == -1  # farther than the tolerance
    assert opt._merged_with(x, 99.5, known, known_f, 2, 1e-2) == -1  # better than that optimum: not its basin
    y = np.array([0.2, 0.0105, 0.95])  # alpha on the 1e-2 floor of the scale: |0.0105 - 0.01| / 0.01 = 0.05
    assert opt._merged_with(y, 99.0, known, known_f, 2, 0.049) == -1
    assert opt._merged_with(y, 99.0, known, known_f, 2, 0.051) == 1
    assert opt._merged_with(x, 100.5, known, known_f, 0, 1.0) == -1  # no known optimum yet


def test_direction_drops_variables_held_at_a_bound():
    h = np.array([[2.0, 0.5, 0.3], [0.5, 1.0, 0.2], [0.3, 0.2, 3.0]])
    g = np.array([1.0, 4.0, -2.0])
    lower, upper = np.zeros(3), np.ones(3)
    d = np.empty(3)
    opt._direction(d, h, g, np.array([0.5, 0.0, 0.4]), lower, upper)  # x1 at its lower bound, pushed down: held
    np.testing.assert_allclose(d[[0, 2]], -h[np.ix_([0, 2], [0, 2])] @ g[[0, 2]], rtol=1e-15)
    assert d[1] == 0.0
    opt._direction(d, h, -g, np.array([0.5, 0.0, 0.4]), lower, upper)  # pushed inwards: free
    np.testing.assert_allclose(d, h @ g, rtol=1e-15)
    opt._direction(d, h, g, np.array([0.5, 0.3, 1.0]), lower, upper)  # x2 at its upper bound, pushed up: held
    np.testing.assert_allclose(d[:2], -h[:2, :2] @ g[:2], rtol=1e-15)
    assert d[2] == 0.0


def test_bfgs_update_satisfies_the_secant_equation():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 4))
    h = a @ a.T + np.eye(4)
    s, y = rng.standard_normal(4), rng.standard_normal(4)
    y = y if s @ y > 0 else -y
    h_new = h.copy()
    opt._bfgs_update(h_new, s, y, np.empty(4))
    np.testing.assert_allclose(h_new @ y, s, rtol=1e-10)  # H+ y = s
    np.testing.assert_allclose(h_new, h_new.T, rtol=1e-12)


def test_expand_and_reduce_are_the_chain_rule():
    c = np.array([0.0, 1.0, 0.5, 1.0, 0.0])
    xr = np.array([0.3, 0.1, 0.2, 5.0])  # x without x_3
    full = np.empty(5)
    opt._expand(full, xr, c, 3)
    np.testing.assert_allclose(full, [0.3, 0.1, 0.2, 1.0 - 0.1 - 0.1, 5.0], rtol=1e-15)
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    red = np.empty(4)
    opt._reduce_gradient(red, g, c, 3)
    np.testing.assert_allclose(red, [1.0, 2.0 - 4.0, 3.0 - 2.0, 5.0], rtol=1e-15)
