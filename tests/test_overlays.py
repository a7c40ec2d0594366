"""Overlays: each against a hand computation on a short series; the weighted quantile against a brute-force sample."""

from dataclasses import dataclass
from typing import ClassVar

import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.datasets import DataError, MarketData
from marginlab.models import RunContext
from marginlab.models.overlays import StressedWeight
from marginlab.models.simulation import risk_measure, weighted_risk_measure
from marginlab.validation import Backtest


def toy_market(prices, volume=None, start="2021-01-01", assets=("BTC",)):
    idx = pd.date_range(start, periods=len(prices), freq="D", tz="UTC", name="time")
    prices = np.asarray(prices, dtype=float).reshape(len(idx), -1)
    p = pd.DataFrame(prices, index=idx, columns=list(assets))
    iv = pd.DataFrame(np.nan, index=idx, columns=list(assets))
    vol = None if volume is None else pd.DataFrame(np.asarray(volume, float).reshape(len(idx), -1), index=idx,
                                                   columns=list(assets))
    return MarketData(prices=p, implied_vol=iv, volume=vol)


@dataclass(frozen=True)
class Listed(mm.MarginModel):
    """A test model: the margin of each date read from a table (quote currency)."""

    name: ClassVar[str] = "listed"
    values: tuple[float, ...] = ()

    def margin(self, state, positions, market, t):
        return float(self.values[market.loc_of(t)])


def _run(market, model, book):
    return Backtest(market, [book], {"m": model}).run().to_frame()["margin"].tolist()


ONE = mm.FixedBook("one BTC", (mm.Position(mm.Spot("BTC"), 1.0),))


# ---------------------------------------------------------------------------------------------------------------
# apc_buffer


def test_apc_buffer_absorbs_rises_and_rebuilds_on_falls_by_hand():
    base = (10.0, 12.0, 20.0, 15.0, 8.0, 9.0, 9.0)
    market = toy_market([100.0] * 7)  # constant notional 100: the margin rate is the margin / 100
    apc = mm.make_overlay("apc_buffer", buffer=0.25)(Listed(values=base))
    # M_0 = 1.25 B_0; M_t = min(max(M_{t-1}, B_t), 1.25 B_t)
    expected = [12.5, 12.5, 20.0, 18.75, 10.0, 10.0]
    assert _run(market, apc, ONE) == expected
    flat = mm.make_overlay("apc_buffer", buffer=0.25, release="none")(Listed(values=base))
    assert _run(market, flat, ONE) == [1.25 * b for b in base[:6]]
    # without a book name (a direct call) there is no memory: the full buffer
    st = apc.fit(market, market.index[2])
    assert apc.margin(st, ONE.positions, market, market.index[2]) == 25.0


def test_apc_buffer_carries_the_previous_margin_per_unit_notional():
    """A book re-sized to constant notional keeps its buffered margin rate: re-sizing is not a margin change."""
    market = toy_market([100.0, 200.0, 200.0])
    book = mm.ConstantNotionalBook("1k BTC", ((mm.Spot("BTC"), 1000.0),))
    apc = mm.make_overlay("apc_buffer")(mm.make_model("static", rate=0.1))
    # every margin is 10% of 1,000 notional; buffered 125, then carried at 12.5% of the same notional
    assert _run(market, apc, book) == pytest.approx([125.0, 125.0])


def test_apc_buffer_gives_the_same_margin_when_asked_twice_for_a_date():
    """The same overlaid model under two labels runs in one task and one context: same margins as alone."""
    market = toy_market(100 * np.exp(np.cumsum(np.random.default_rng(8).normal(0, 0.03, 120))))
    apc = mm.make_overlay("apc_buffer")(mm.make_model("historical_var", lookback=40, min_obs=20))
    bt = Backtest(market, [ONE], {"a": apc, "b": apc}, start=market.index[60])
    assert [t.models for t in bt.tasks()] == [("a", "b")]
    f = bt.run().to_frame()
    alone = Backtest(market, [ONE], {"a": apc}, start=market.index[60]).run().to_frame()["margin"].tolist()
    assert f[f["model"] == "a"]["margin"].tolist() == f[f["model"] == "b"]["margin"].tolist() == alone
    base = Backtest(market, [ONE], {"hs": apc.inner}, start=market.index[60]).run().to_frame()["margin"]
    assert alone != [1.25 * m for m in base]  # the memory was used


def test_apc_buffer_memory_is_per_book_and_per_model():
    market = toy_market([100.0] * 5)
    a = mm.make_overlay("apc_buffer")(Listed(values=(10.0, 20.0, 10.0, 10.0, 10.0)))
    b = mm.make_overlay("apc_buffer")(Listed(values=(10.0, 10.0, 10.0, 10.0, 10.0)))
    two = mm.FixedBook("two BTC", (mm.Position(mm.Spot("BTC"), 2.0),))
    f = Backtest(market, [ONE, two], {"a": a, "b": b}).run().to_frame()
    got = f.groupby(["model", "portfolio"], sort=False)["margin"].apply(list).to_dict()
    assert got[("a", "one BTC")] == got[("a", "two BTC")] == [12.5, 20.0, 12.5, 12.5]
    assert got[("b", "one BTC")] == [12.5] * 4


# ---------------------------------------------------------------------------------------------------------------
# liquidity_addon


def test_liquidity_addon_scales_by_the_square_root_of_days_to_liquidate():
    # ADV = 1,000 USD/day, participation 10%: 100 USD/day; a 400 USD position takes 4 days > 1-day MPOR
    market = toy_market([100.0] * 40, volume=[1000.0] * 40)
    model = mm.make_overlay("liquidity_addon", participation=0.1, adv_days=30)(mm.make_model("static", rate=0.1))
    t = market.index[35]
    for q, factor in ((4.0, 2.0), (0.5, 1.0), (9.0, 3.0)):
        book = [mm.Position(mm.Spot("BTC"), q)]
        m = model.margin(model.fit(market, t), book, market, t)
        assert m == pytest.approx(0.1 * q * 100.0 * factor, rel=1e-8)
    # an MPOR of 4 days absorbs the 4-day close-out: no add-on
    st = model.fit(market, t, context=RunContext(mpor=4))
    assert model.margin(st, [mm.Position(mm.Spot("BTC"), 4.0)], market, t) == pytest.approx(40.0, rel=1e-8)


def test_liquidity_addon_weights_assets_by_delta_and_reads_volume_known_at_t():
    prices = np.column_stack([[100.0] * 40, [10.0] * 40])
    vol = np.column_stack([[1000.0] * 40, [1e9] * 40])
    vol[36:, 0] = 1e12  # volume after t must not matter
    market = toy_market(prices, volume=vol, assets=("BTC", "ETH"))
    model = mm.make_overlay("liquidity_addon")(mm.make_model("static", rate=0.1))
    t = market.index[35]
    book = [mm.Position(mm.Perpetual("BTC"), 4.0), mm.Position(mm.Perpetual("ETH"), -40.0)]
    # BTC: 400 / (0.1 x 1000) = 4 days -> sqrt(4) - 1 = 1 on half the delta; ETH liquid: 0
    assert model.margin(model.fit(market, t), book, market, t) == pytest.approx(80.0 * 1.5, rel=1e-8)


def test_liquidity_addon_option_delta_matches_black76():
    import marginlab.datasets as ds

    market = ds.load_market(["BTC"], start="2021-04-01", end="2021-07-31")
    t = pd.Timestamp("2021-06-10", tz="UTC")
    i = market.loc_of(t)
    opt = mm.Option("BTC", pd.Timestamp("2021-07-09 08:00", tz="UTC"), 40000.0, "call")
    overlay = mm.make_overlay("liquidity_addon")
    d = overlay.delta_notional([mm.Position(opt, -3.0)], market, i)
    s, vol = market.price_array[i, 0], market.vol_array[i, 0]
    tau = market.years_to(i, [opt.expiry])[0]
    delta = mm.black76_greeks(s, 40000.0, tau, vol, True)["delta"]
    assert d[0] == pytest.approx(-3.0 * s * delta, rel=1e-6)


def test_liquidity_addon_without_volume_is_a_data_error():
    market = toy_market([100.0] * 10)
    model = mm.make_overlay("liquidity_addon")(mm.make_model("static"))
    with pytest.raises(DataError, match="no traded volume"):
        model.margin(model.fit(market, market.index[5]), ONE.positions, market, market.index[5])


# ---------------------------------------------------------------------------------------------------------------
# lookback_floor


def _hs_var(prices, i, n):
    """Historical VaR 99% of one long BTC by hand: the largest loss (k = ceil(n x 1%) = 1) of the last n moves."""
    r = np.diff(np.log(prices))[i - n:i]
    return max(np.max(-prices[i] * np.expm1(r)), 0.0)


def test_lookback_floor_is_the_max_of_the_model_and_its_long_lookback_version():
    rng = np.random.default_rng(3)
    r = rng.normal(0, 0.02, 80)
    r[5] = -0.3  # an old crash: inside the 60-row window, outside the 20-row one
    prices = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    market = toy_market(prices)
    inner = mm.make_model("historical_var", lookback=20, min_obs=20)
    model = mm.make_overlay("lookback_floor", years=60 / 365)(inner)
    for i in (30, 60, 70, 80):
        t = market.index[i]
        expected = max(_hs_var(prices, i, 20), _hs_var(prices, i, min(60, i)))
        assert model.margin(model.fit(market, t), ONE.positions, market, t) == pytest.approx(expected, rel=1e-12)
    assert model.margin(model.fit(market, market.index[30]), ONE.positions, market, market.index[30]) > \
        inner.margin(inner.fit(market, market.index[30]), ONE.positions, market, market.index[30])


# ---------------------------------------------------------------------------------------------------------------
# stressed_weight


@pytest.mark.parametrize("measure, level", [("var", 0.99), ("var", 0.9), ("var", 0.975), ("es", 0.9), ("es", 0.975)])
def test_weighted_risk_measure_equals_a_brute_force_replicated_sample(measure, level):
    rng = np.random.default_rng(11)
    losses = rng.standard_t(3, 40)
    counts = rng.integers(1, 6, 40)
    counts[:: 7] = 1
    replicated = np.repeat(losses, counts)
    if measure == "es":  # the ES of the replicated sample is the mean of its k largest: make N (1 - level) whole
        extra = int(np.ceil(replicated.size * (1 - level))) / (1 - level) - replicated.size
        counts[-1] += int(round(extra))
        replicated = np.repeat(losses, counts)
    assert weighted_risk_measure(losses, counts.astype(float), measure, level) == \
        pytest.approx(risk_measure(replicated, measure, level), rel=1e-12)


def test_weighted_risk_measure_with_equal_weights_is_the_plain_measure():
    x = np.random.default_rng(0).normal(size=1000)
    for measure, level in (("var", 0.99), ("es", 0.975), ("var", 0.975)):
        assert weighted_risk_measure(x, np.ones(1000), measure, level) == pytest.approx(risk_measure(x, measure, level),
                                                                                    rel=1e-14)


def test_stressed_weight_by_hand_on_a_short_series():
    """Window of 20 rows (33..52), stressed period rows 31..35, of which 33..35 inside the window: the 17
    other window scenarios share 75% (3/68 each) and the 5 de-duplicated stressed ones 25% (1/20 each) — the
    same as a sample replicating them 15 and 17 times (340 scenarios)."""
    rng = np.random.default_rng(5)
    r = rng.normal(0, 0.02, 60)
    r[30:35] = [-0.15, 0.12, -0.2, -0.1, 0.08]  # rows 31..35
    prices = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    market = toy_market(prices)
    i = 52  # window rows 33..52; stressed rows 31..35: rows 33..35 would otherwise be counted twice
    for measure in ("var", "es"):
        inner = mm.make_model(f"historical_{measure}", lookback=20, min_obs=20, level=0.9)
        model = mm.make_overlay("stressed_weight", weight=0.25, stress_start=str(market.index[31].date()),
                                stress_end=str(market.index[35].date()))(inner)
        t = market.index[i]
        fc = model.forecast(model.fit(market, t), ONE.positions, market, t)
        losses = -prices[i] * np.expm1(np.diff(np.log(prices)))  # loss of the move ending at row k is losses[k-1]
        window = [k for k in range(33, 53) if not 31 <= k <= 35]
        stressed = list(range(31, 36))
        assert len(window) == 17
        sample = np.concatenate([np.repeat(losses[np.array(window) - 1], 15), np.repeat(losses[np.array(stressed) - 1],
                                                                                      17)])
        assert sample.size == 340 and 255 / 340 == 0.75
        assert fc.margin == pytest.approx(max(risk_measure(sample, measure, 0.9), 0.0), rel=1e-12)
        assert fc.weights.sum() == pytest.approx(1.0)


def test_a_stressed_weight_backtest_reports_the_weighted_rank_pit():
    """End to end: the engine's ``pit`` column of a ``stressed_weight`` run is the weighted rank PIT
    (W_ge + w/2)/(W + w) of the realised loss among the overlay's scenarios (w the mean weight), computed here from
    the forecast's losses and weights and the engine's P&L, and not the equal-weight rank PIT (k + 1/2)/(N + 1):
    the stressed scenarios' weights reach the Berkowitz test."""
    rng = np.random.default_rng(5)
    r = rng.normal(0, 0.02, 70)
    r[30:35] = [-0.15, 0.12, -0.2, -0.1, 0.08]
    prices = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    market = toy_market(prices)
    inner = mm.make_model("historical_var", lookback=20, min_obs=20, level=0.9)
    model = mm.make_overlay("stressed_weight", weight=0.25, stress_start=str(market.index[31].date()),
                            stress_end=str(market.index[35].date()))(inner)
    frame = Backtest(market, [ONE], {"sw": model}, start=str(market.index[40].date())).run().to_frame()
    assert len(frame) == 30
    differs = 0
    for row in frame.itertuples():
        fc = model.forecast(model.fit(market, row.date, context=RunContext()), ONE.positions, market, row.date)
        loss, w = -row.pnl, fc.weights
        assert w is not None and w.size == fc.losses.size
        above = fc.losses >= loss
        weighted = (w[above].sum() + w.mean() / 2) / (w.sum() + w.mean())
        equal = (above.sum() + 0.5) / (fc.losses.size + 1)
        assert row.pit == pytest.approx(weighted, rel=1e-12, abs=1e-15), row.date
        differs += abs(row.pit - equal) > 1e-3
    assert differs >= 10


def test_stressed_weight_takes_the_natural_share_when_larger_and_adds_nothing_without_stress_rows():
    overlay = StressedWeight(weight=0.25)
    keep, omega = overlay.weights(np.arange(10), np.arange(5))
    assert omega == 0.5 and keep.sum() == 5
    keep, omega = overlay.weights(np.full(10, -1), np.arange(5))  # bootstrap paths are never de-duplicated
    assert omega == 0.25 and keep.all()
    market = toy_market(100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.02, 40))))
    inner = mm.make_model("historical_var", lookback=20, min_obs=20)
    later = mm.make_overlay("stressed_weight", stress_start="2030-01-01", stress_end="2030-02-01")(inner)
    t = market.index[30]
    # before its stressed period the model has no margin (warm-up), not the inner model's margin under its name
    assert np.isfinite(inner.margin(inner.fit(market, t), ONE.positions, market, t))
    assert np.isnan(later.margin(later.fit(market, t), ONE.positions, market, t))
    assert Backtest(market, [ONE], {"later": later}).run().to_frame()["margin"].isna().all()


def _calls_and_xrp(market, t):
    from marginlab.models.instruments import Option, Position, Spot
    s, x = market.prices.loc[t, "BTC"], market.prices.loc[t, "XRP"]
    return (Position(Option("BTC", "2022-03-25 08:00", float(round(s, -3)), "call"), -10.0),
            Position(Spot("XRP"), 1e6 / x))


def test_stressed_weight_needs_the_implied_vol_of_the_option_assets_only():
    """Short BTC calls + XRP spot (XRP has no implied vol): the stressed period's 16 rows are kept (none were:
    the overlay asked for XRP's vol and fell back to the inner margin, 153,625 instead of 309,474), each the
    calls' loss plus the XRP spot loss -q S (e^r - 1); the margin is the weighted VaR of a replicated sample."""
    import marginlab.datasets as ds
    market = ds.load_market(["BTC", "XRP"], start="2021-01-01", end="2022-03-01")
    t = pd.Timestamp("2022-03-01", tz="UTC")
    calls, xrp = _calls_and_xrp(market, t)
    inner = mm.make_model("historical_var")
    overlay = mm.make_overlay("stressed_weight", stress_start="2021-05-10", stress_end="2021-05-25")
    model = overlay(inner)
    state = model.fit(market, t, context=RunContext(mpor=1, seed=1))
    rows, losses = overlay.stressed_rows(inner, state.inner, (calls, xrp), market, t)
    period = np.arange(market.loc_of("2021-05-10"), market.loc_of("2021-05-25") + 1)
    assert list(rows) == list(period) and rows.size == 16
    _, call_losses = overlay.stressed_rows(inner, state.inner, (calls,), market, t)
    r_xrp = market.log_return_array[period, market.asset_index["XRP"]]
    assert losses == pytest.approx(call_losses - 1e6 * np.expm1(r_xrp), rel=1e-12)
    window = inner.scenarios(state.inner, (calls, xrp), market, t)
    kept = window.losses[~np.isin(window.rows, period)]
    n = kept.size
    assert n == window.rows.size - 16 and 16 / window.rows.size < 0.25  # weights 0.75 / n and 0.25 / 16
    sample = np.concatenate([np.repeat(kept, 48), np.repeat(losses, n)])  # 48 n : 16 n = 0.75 : 0.25
    fc = model.forecast(state, (calls, xrp), market, t, book="calls + XRP")
    assert fc.margin == pytest.approx(risk_measure(sample, "var", 0.99), rel=1e-12)
    assert fc.margin > 2 * inner.margin(state.inner, (calls, xrp), market, t)


def test_stressed_weight_refuses_a_period_the_book_cannot_be_revalued_on():
    """An option book and a stressed period before BTC's implied-vol history (from 2021-03-24): one line naming
    the period, the book and the data coverage (it silently gave the inner model's margin); a spot book uses it."""
    import marginlab.datasets as ds
    market = ds.load_market(["BTC", "XRP"], start="2019-06-01", end="2022-03-01")
    t = pd.Timestamp("2022-03-01", tz="UTC")
    calls, _ = _calls_and_xrp(market, t)
    inner = mm.make_model("historical_var")
    model = mm.make_overlay("stressed_weight", stress_start="2020-03-01", stress_end="2020-03-31")(inner)
    state = model.fit(market, t, context=RunContext(mpor=1, seed=1))
    with pytest.raises(DataError, match=r"^stressed_weight: the stress period 2020-03-01\.\.2020-03-31 has no usable "
                                        r"row for book 'calls' at 2022-03-01 \(data known then: BTC returns from "
                                        r"2019-06-02; BTC implied-vol changes from 2021-03-25\)$"):
        model.forecast(state, (calls,), market, t, book="calls")
    spot = (mm.Position(mm.Spot("BTC"), 1.0),)
    assert model.margin(state, spot, market, t) > inner.margin(state.inner, spot, market, t)


def test_stressed_weight_finds_the_most_volatile_period_known_at_t():
    r = np.random.default_rng(2).normal(0, 0.01, 200)
    r[100:110] *= 12  # the stressed stretch: rows 101..110
    prices = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    market = toy_market(prices)
    inner = mm.make_model("historical_var", lookback=40, min_obs=20)
    overlay = mm.make_overlay("stressed_weight", stress_days=10)
    i = 190
    rows, _ = overlay.stressed_rows(inner, inner.fit(market, market.index[i]), ONE.positions, market,
                                    market.index[i])
    assert list(rows) == list(range(101, 111))
    # before the stretch happened it cannot be chosen
    rows, _ = overlay.stressed_rows(inner, inner.fit(market, market.index[99]), ONE.positions, market,
                                    market.index[99])
    assert rows.max() <= 99


# ---------------------------------------------------------------------------------------------------------------
# composition, registry, bad input


def test_overlays_compose_in_order_and_run_with_their_inner_model():
    hs = mm.make_model("historical_var", lookback=250)
    model = mm.make_overlay("apc_buffer")(mm.make_overlay("lookback_floor")(mm.make_overlay("stressed_weight")(hs)))
    assert model.name == "apc_buffer(lookback_floor(stressed_weight(historical_var)))"
    assert [o.name for o in model.overlays] == ["stressed_weight", "lookback_floor", "apc_buffer"]
    assert model.inner == hs and model.tail_prob == 0.01 and model.estimation_key == hs.estimation_key
    assert model.margin_measure is None and mm.make_overlay("stressed_weight")(hs).margin_measure == "var"
    assert set(mm.OVERLAYS) == {"apc_buffer", "stressed_weight", "lookback_floor", "liquidity_addon"}
    assert "apc_buffer(buffer=0.25" in model.describe() and model.describe().endswith(hs.describe())
    market = toy_market(100 * np.exp(np.cumsum(np.random.default_rng(4).normal(0, 0.02, 300))))
    bt = Backtest(market, [ONE], {"hs": hs, "apc": mm.make_overlay("apc_buffer")(hs)}, start=market.index[260])
    assert [t.models for t in bt.tasks()] == [("hs", "apc")]
    f = bt.run().to_frame()
    apc = f[f["model"] == "apc"]
    assert apc[["var", "es", "pit"]].isna().all().all() and (apc["margin"] > 0).all()


@pytest.mark.parametrize("build, message", [
    (lambda: mm.make_overlay("nope"), "unknown overlay 'nope'; registered overlays"),
    (lambda: mm.make_overlay("apc_buffer", size=1), r"unknown parameter\(s\) \['size'\] for overlay 'apc_buffer'"),
    (lambda: mm.make_overlay("apc_buffer", buffer=True), "apc_buffer: buffer must be a number"),
    (lambda: mm.make_overlay("apc_buffer", release="sometimes"), "release must be 'absorb' or 'none'"),
    (lambda: mm.make_overlay("stressed_weight", weight=1.5), r"weight must be in \(0.0, 1.0\)"),
    (lambda: mm.make_overlay("stressed_weight", stress_start="2020-03-01"), "give both stress_start and stress_end"),
    (lambda: mm.make_overlay("stressed_weight")(mm.make_model("static")), "applies to scenario models"),
    (lambda: mm.make_overlay("lookback_floor")(mm.make_model("static")), "applies to models with a lookback"),
    (lambda: mm.make_overlay("stressed_weight")(mm.make_overlay("apc_buffer")(mm.make_model("historical_var"))),
     "must be the first overlay"),
    (lambda: mm.make_overlay("apc_buffer")(mm.make_overlay("apc_buffer")(mm.make_model("static"))), "given twice"),
    (lambda: mm.make_overlay("liquidity_addon", participation=0.0), "participation must be in"),
])
def test_bad_overlays_name_the_fault(build, message):
    with pytest.raises(ValueError, match=message):
        build()
