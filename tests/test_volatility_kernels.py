"""Volatility kernels against independent references: arch's recursions and densities, scipy, finite differences.

Every (process, distribution) pair the package offers is checked: variance recursion (arch's
``compute_variance``), log-likelihood (arch's distributions with arch's variances; scipy for the
normal and t), analytic gradient (central differences), BHHH matrix (outer product of numerical
per-observation scores), the log-by-blocks shortcut, and the FHS path simulation by hand.
These tests also run in the pure-Python mode (``tests/test_volatility_nojit.py``).
"""

import marginlab.datasets as ds
import numpy as np
import pytest
from arch.univariate import EGARCH, GARCH, Normal, SkewStudent, StudentsT
from marginlab.models.volatility import FilterSpec, backcast, conditional_variance, loglik_and_grad, simulate_paths
from marginlab.models.volatility.distributions import digamma, lgamma
from marginlab.models.volatility.likelihood import likelihood_kernels
from scipy import special, stats

BTC = (np.log(ds.load_prices("BTC")["close"]).diff().dropna() * 100).to_numpy()
X = np.ascontiguousarray(BTC[1500:1900])  # 400 returns: enough for every check, quick in pure Python

#: a parameter point per process (not an optimum) and per distribution
VOL_THETA = {"garch": [0.6, 0.09, 0.88], "gjr": [0.5, 0.05, 0.08, 0.86], "ewma": [],
             "egarch": [0.08, 0.22, -0.04, 0.97]}
DIST_THETA = {"normal": [], "t": [4.5], "skewt": [4.5, -0.08]}
PAIRS = [(v, d) for v in VOL_THETA for d in DIST_THETA]


def _theta(vol, dist):
    return np.array(VOL_THETA[vol] + DIST_THETA[dist], dtype=float)


def _arch_variance(vol, theta, x):
    """Conditional variances from arch's own recursions (EWMA: numpy, lambda 0.94)."""
    if vol == "ewma":
        s2 = np.empty(x.size)
        s2[0] = backcast(x)
        for t in range(1, x.size):
            s2[t] = 0.94 * s2[t - 1] + 0.06 * x[t - 1] ** 2
        return s2
    proc = EGARCH(p=1, o=1, q=1) if vol == "egarch" else GARCH(p=1, o=int(vol == "gjr"), q=1)
    params = theta[:4] if vol != "garch" else theta[:3]
    sigma2 = np.empty(x.size)
    return proc.compute_variance(params, x, sigma2, proc.backcast(x), proc.variance_bounds(x))


def _arch_loglik(vol, dist, theta, x):
    """Per-observation log-likelihood from arch's variance and arch's distribution."""
    s2 = _arch_variance(vol, theta, x)
    k = len(VOL_THETA[vol])
    law = {"normal": Normal(), "t": StudentsT(), "skewt": SkewStudent()}[dist]
    return law.loglikelihood(theta[k:], x, s2, individual=True)


@pytest.mark.parametrize("vol", list(VOL_THETA))
def test_variance_recursion_equals_arch(vol):
    theta = _theta(vol, "normal")
    spec = FilterSpec.from_names(vol, "normal")
    v = conditional_variance(X, spec, theta, backcast(X))
    np.testing.assert_allclose(v[:-1], _arch_variance(vol, theta, X), rtol=1e-13)
    # the last entry is the one-step forecast: the recursion applied to the last return
    longer = conditional_variance(np.append(X, 1.0), spec, theta, backcast(X))
    assert longer[-2] == pytest.approx(v[-1], rel=1e-15)


def test_backcast_equals_arch():
    assert backcast(BTC[:500]) == pytest.approx(GARCH().backcast(BTC[:500]), rel=1e-14)


@pytest.mark.parametrize("vol, dist", PAIRS)
def test_loglik_equals_arch_and_gradient_equals_central_differences(vol, dist):
    theta = _theta(vol, dist)
    spec = FilterSpec.from_names(vol, dist)
    bc = backcast(X)
    ll, grad = loglik_and_grad(theta, X, spec, bc)
    assert ll == pytest.approx(_arch_loglik(vol, dist, theta, X).sum(), rel=1e-12)
    assert grad.shape == theta.shape
    for i in range(theta.size):
        h = 1e-6 * max(abs(theta[i]), 1e-2)
        up, dn = theta.copy(), theta.copy()
        up[i] += h
        dn[i] -= h
        fd = (loglik_and_grad(up, X, spec, bc)[0] - loglik_and_grad(dn, X, spec, bc)[0]) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=2e-5, abs=2e-4), (spec.parameter_names()[i], grad[i], fd)


@pytest.mark.parametrize("dist", ["normal", "t"])
def test_loglik_equals_scipy_densities(dist):
    theta = _theta("gjr", dist)
    s2 = _arch_variance("gjr", theta, X)
    ref = stats.norm.logpdf(X, scale=np.sqrt(s2)) if dist == "normal" else stats.t.logpdf(
        X, theta[-1], scale=np.sqrt(s2 * (theta[-1] - 2) / theta[-1]))
    ll, _ = loglik_and_grad(theta, X, FilterSpec.from_names("gjr", dist), backcast(X))
    assert ll == pytest.approx(ref.sum(), rel=1e-12)


@pytest.mark.parametrize("vol, dist", [("garch", "normal"), ("gjr", "t"), ("egarch", "skewt"), ("garch", "skewt")])
def test_bhhh_matrix_equals_outer_product_of_numerical_scores(vol, dist):
    theta = _theta(vol, dist)
    eps = 1e-6 * np.maximum(np.abs(theta), 1e-2)
    scores = np.column_stack([(_arch_loglik(vol, dist, theta + e, X) - _arch_loglik(vol, dist, theta - e, X))
                              / (2 * eps[j]) for j, e in enumerate(np.diag(eps))])
    lk = likelihood_kernels(*(type(c) for c in (FilterSpec.from_names(vol, dist).process,
                                                 FilterSpec.from_names(vol, dist).distribution)))
    opg = lk.scores(theta, (X, backcast(X), np.empty(0)))
    np.testing.assert_allclose(opg, scores.T @ scores, rtol=2e-5)


@pytest.mark.parametrize("vol, dist", [("garch", "normal"), ("gjr", "t"), ("egarch", "skewt")])
def test_blocked_log_sums_equal_per_term_logs(vol, dist):
    """The pass takes logs of products over blocks of 32 terms; it must equal one log per term."""
    spec = FilterSpec.from_names(vol, dist)
    lk = likelihood_kernels(type(spec.process), type(spec.distribution))
    x = np.ascontiguousarray(BTC[1000:1403])  # 403 terms: the last block is partial
    theta, bc, fixed = _theta(vol, dist), backcast(x), spec.fixed()
    for one_pass in (lk.value_pass, lk.gradient_pass):
        ok_b, ll_b, g_b, s_b = one_pass(x, theta, fixed, bc, True)
        ok_l, ll_l, g_l, s_l = one_pass(x, theta, fixed, bc, False)
        assert ok_b and ok_l
        assert ll_b == pytest.approx(ll_l, rel=1e-14)
        np.testing.assert_allclose(g_b, g_l, rtol=1e-14)
        np.testing.assert_allclose(s_b, s_l, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("dist", ["normal", "t"])
def test_block_product_out_of_range_falls_back_to_per_term_logs(dist):
    spec = FilterSpec.from_names("garch", dist)
    lk = likelihood_kernels(type(spec.process), type(spec.distribution))
    huge = X * 1e18  # variances ~1e36: a block of 32 overflows
    theta = np.array([1e36, 0.05, 0.9] + DIST_THETA[dist])
    bc, fixed = backcast(huge), np.empty(0)
    with np.errstate(over="ignore"):
        assert not lk.value_pass(huge, theta, fixed, bc, True)[0]
        assert not lk.gradient_pass(huge, theta, fixed, bc, True)[0]
        ll_value = lk.value(huge, theta, fixed, bc)[0]
        ll, _ = loglik_and_grad(theta, huge, spec, bc)
    ref = _arch_loglik("garch", dist, theta, huge).sum()
    assert np.isfinite(ll) and ll == pytest.approx(ref, rel=1e-12) and ll_value == pytest.approx(ref, rel=1e-12)


def test_lgamma_and_digamma_match_scipy():
    xs = np.linspace(1.01, 260.0, 2001)
    np.testing.assert_allclose([lgamma(v) for v in xs], special.gammaln(xs), rtol=0, atol=5e-14)
    np.testing.assert_allclose([digamma(v) for v in xs], special.digamma(xs), rtol=0, atol=1e-13)


def _fit_of(vol, theta, x):
    from marginlab.models.volatility import FilterFit

    spec = FilterSpec.from_names(vol, "normal")
    v = conditional_variance(x, spec, theta, backcast(x))
    return FilterFit(spec=spec, params=theta, loglik=0.0, sigma2=v[:-1], std_resids=x / np.sqrt(v[:-1]),
                     sigma2_next=float(v[-1]))


@pytest.mark.parametrize("vol", ["garch", "gjr", "egarch"])
def test_simulate_paths_two_steps_by_hand(vol):
    theta = _theta(vol, "normal")
    fit = _fit_of(vol, theta, X)
    z = np.array([[1.0], [-2.0], [0.5]])
    out = simulate_paths([fit], z, np.array([[1, 2], [0, 0]]))
    e1 = np.sqrt(fit.sigma2_next) * -2.0
    if vol == "garch":
        s2 = theta[0] + theta[1] * e1**2 + theta[2] * fit.sigma2_next
    elif vol == "gjr":
        s2 = theta[0] + (theta[1] + theta[2]) * e1**2 + theta[3] * fit.sigma2_next
    else:
        lns2 = theta[0] + theta[1] * (2.0 - np.sqrt(2 / np.pi)) + theta[2] * -2.0 + theta[3] * np.log(fit.sigma2_next)
        s2 = np.exp(lns2)
    assert out[0, 0] == pytest.approx(e1 + np.sqrt(s2) * 0.5, rel=1e-12)
    assert out[1, 0] == pytest.approx(np.sqrt(fit.sigma2_next) * (1.0 + np.sqrt(
        _fit_of(vol, theta, np.append(X, np.sqrt(fit.sigma2_next))).sigma2_next / fit.sigma2_next)), rel=1e-12)
