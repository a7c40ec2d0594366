"""Coverage functions pair labelled inputs by index label, arrays by position (issue 12)."""

import numpy as np
import pandas as pd
import pytest
from marginlab.validation import coverage as cv
from scipy import stats

N = 300
IDX = pd.date_range("2022-01-01", periods=N, tz="UTC")


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    pnl = rng.standard_t(4, N) * 0.8
    var = np.full(N, 2.326) * (1 + 0.2 * rng.random(N))
    es = var * 1.15
    pit = stats.t.cdf(pnl / 0.8, 4)
    return pnl, var, es, pit


def series(values, index=IDX, name=None):
    return pd.Series(values, index=index, name=name)


CALLS = {
    "exceptions": lambda pnl, var, es, pit: np.asarray(cv.exceptions(pnl, var)),
    "dynamic_quantile": lambda pnl, var, es, pit: cv.dynamic_quantile(pnl, var, 0.01).statistic,
    "mcneil_frey": lambda pnl, var, es, pit: cv.mcneil_frey(pnl, var, es, n_boot=200).statistic,
    "acerbi_szekely": lambda pnl, var, es, pit: cv.acerbi_szekely(pnl, var, es, 0.01, n_sims=200).statistic,
    "disclosure_table": lambda pnl, var, es, pit: cv.disclosure_table(pnl, var, 0.01).loc["total"].to_numpy(),
    "backtest": lambda pnl, var, es, pit: cv.backtest(pnl, var, es=es, p=0.01, pit=pit).to_frame()[
        "statistic"].to_numpy(),
}


@pytest.mark.parametrize("fn", CALLS.values(), ids=CALLS.keys())
def test_series_in_different_order_are_paired_by_label(fn):
    pnl, var, es, pit = inputs()
    expected = fn(pnl, var, es, pit)  # arrays already in the same order
    perm = np.random.default_rng(1).permutation(N)
    # every input but pnl shuffled: by position they would pair the wrong days
    got = fn(series(pnl), series(var[perm], IDX[perm]), series(es[perm], IDX[perm]), series(pit[perm], IDX[perm]))
    np.testing.assert_allclose(np.asarray(got, float), np.asarray(expected, float), rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("fn", CALLS.values(), ids=CALLS.keys())
def test_series_with_different_labels_are_refused_naming_the_labels(fn):
    pnl, var, es, pit = inputs()
    shifted = IDX + pd.Timedelta(days=1)  # same length, one label differs at each end
    with pytest.raises(ValueError, match=r"different index labels.*2022-01-01.* only in pnl.*"
                                         r"2022-10-28.* only in var"):
        fn(series(pnl), series(var, shifted), es, pit)


def test_arrays_and_series_mixed_pair_by_position():
    pnl, var, es, pit = inputs()
    hits = cv.exceptions(pnl, series(var, IDX[::-1]))  # the array carries no labels: positional
    assert hits.index.equals(IDX[::-1]) and (hits.to_numpy() == (-pnl > var)).all()
    rep = cv.backtest(list(pnl), series(var), es=es, p=0.01)
    assert rep.headline()["breaches"] == int((-pnl > var).sum())


def test_label_mismatch_of_a_shorter_series_names_the_missing_labels():
    pnl, var, *_ = inputs()
    with pytest.raises(ValueError, match=r"2022-10-27.* only in pnl"):
        cv.exceptions(series(pnl), series(var[:-1], IDX[:-1]))


def test_duplicated_labels_cannot_be_paired():
    pnl, var, *_ = inputs()
    dup = IDX.insert(5, IDX[4])[:N]
    with pytest.raises(ValueError, match="duplicated index labels"):
        cv.exceptions(series(pnl), series(var, dup))
    # the same duplicated index on both sides pairs unambiguously, by position
    assert cv.exceptions(series(pnl, dup), series(var, dup)).index.equals(dup)


def test_report_dates_come_from_the_aligned_index():
    pnl, var, *_ = inputs()
    perm = np.random.default_rng(2).permutation(N)
    rep = cv.backtest(series(pnl), series(var[perm], IDX[perm]), p=0.01)
    ref = cv.backtest(series(pnl), var, p=0.01)
    pd.testing.assert_frame_equal(rep.disclosure, ref.disclosure)
    assert list(rep.disclosure.index) == ["2022", "total"]
