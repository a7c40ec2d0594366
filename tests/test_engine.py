"""The replay engine: a hand-computed case to the cent, conventions, reference books, bad input."""

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.datasets import DataError, MarketData
from marginlab.validation import Backtest
from marginlab.validation.engine import COLUMNS


def toy_market(prices, vols=None, start="2021-01-01"):
    idx = pd.date_range(start, periods=len(prices), freq="D", tz="UTC", name="time")
    p = pd.DataFrame({"BTC": prices}, index=idx, dtype=float)
    iv = pd.DataFrame({"BTC": vols if vols is not None else [np.nan] * len(prices)}, index=idx, dtype=float)
    return MarketData(prices=p, implied_vol=iv)


def test_hand_computed_case_to_the_cent():
    # 2 BTC long spot, static 10% margin, MPOR 1 day
    market = toy_market([100.0, 90.0, 95.0, 80.0, 85.0])
    book = mm.FixedBook("two BTC", (mm.Position(mm.Spot("BTC"), 2.0),))
    res = Backtest(market, [book], [mm.make_model("static", rate=0.10)]).run()
    f = res.to_frame()
    assert list(f["margin"]) == [20.0, 18.0, 19.0, 16.0]
    assert list(f["pnl"]) == [-20.0, 10.0, -30.0, 10.0]
    assert list(f["loss"]) == [20.0, -10.0, 30.0, -10.0]
    assert list(f["breach"]) == [False, False, True, False]  # 20 = 20 is not a breach (strict)
    assert res.breaches().loc[("two BTC", "static"), "breaches"] == 1


def test_a_flat_price_is_a_loss_of_plus_zero():
    # loss = -pnl wrote -0.0 for a zero P&L (a flat price, a hedged book): "-0.0" in backtest.csv
    market = toy_market([100.0, 100.0, 90.0, 90.0])
    book = mm.FixedBook("two BTC", (mm.Position(mm.Spot("BTC"), 2.0),))
    f = Backtest(market, [book], [mm.make_model("static", rate=0.10)]).run().to_frame()
    assert list(f["loss"]) == [0.0, 20.0, 0.0]
    assert not np.signbit(f["loss"].to_numpy()[[0, 2]]).any()
    assert "-0.0" not in f.to_csv(index=False)


def test_mpor_two_days_hand_computed():
    market = toy_market([100.0, 90.0, 95.0, 80.0, 85.0])
    book = mm.FixedBook("short", (mm.Position(mm.Perpetual("BTC"), -1.0),))
    f = Backtest(market, [book], [mm.make_model("static", rate=0.05)], mpor_days=2).run().to_frame()
    assert list(f["pnl"]) == [5.0, 10.0, 10.0]  # short 1: -(P_{t+2} - P_t)
    assert list(f["date"].dt.day) == [1, 2, 3]


def test_option_repriced_and_settled_at_intrinsic():
    market = toy_market([100.0, 100.0, 120.0, 130.0], vols=[0.5, 0.5, 0.5, 0.5])
    expiry = pd.Timestamp("2021-01-03 08:00", tz="UTC")
    book = [mm.Position(mm.Option("BTC", expiry, 110.0, "call"), -1.0)]
    t0 = market.index[0]
    # row D is observed at D 24:00: 1 day 8 hours to expiry at the first row, 8 hours at the second
    p0 = mm.black76_price(100.0, 110.0, (1 + 8 / 24) / 365, 0.5, True)
    p1 = mm.black76_price(100.0, 110.0, (8 / 24) / 365, 0.5, True)
    assert mm.realised_pnl(book, market, t0, 1) == pytest.approx(-(p1 - p0), rel=1e-12)
    # over 2 or 3 days the option expires on 2021-01-03 08:00: it settles on the last close observed at or
    # before then, 2021-01-03 00:00 (row 2021-01-02, 100): worthless; the 120 close comes 16 hours later
    assert mm.realised_pnl(book, market, t0, 3) == pytest.approx(p0, rel=1e-12)
    # settled options carry no P&L after their expiry
    assert mm.realised_pnl(book, market, market.index[2], 1) == 0.0


def test_revalue_matches_realised_for_linear_and_options():
    market = toy_market([100.0, 105.0, 99.0], vols=[0.6, 0.65, 0.7])
    expiry = pd.Timestamp("2021-02-01 08:00", tz="UTC")
    book = [mm.Position(mm.Option("BTC", expiry, 100.0, "put"), 3.0), mm.Position(mm.Perpetual("BTC"), 1.0)]
    t = market.index[0]
    shock = np.log(105.0 / 100.0)
    scen = mm.revalue(book, market, t, np.array([shock, 0.0]), np.array([0.05, 0.0]), horizon_days=1)
    assert scen[0] == pytest.approx(mm.realised_pnl(book, market, t, 1), rel=1e-12)
    assert scen.shape == (2,)


def test_reference_portfolios_full_history_static_models():
    market = ds.load_market(["BTC", "ETH", "SOL", "XRP"])
    books = mm.reference_portfolios()
    assert len(books) >= 10
    res = Backtest(market, books, [mm.make_model("static"), mm.make_model("tiered"),
                                   mm.make_model("deribit_standard")]).run()
    f = res.to_frame()
    assert list(f.columns) == COLUMNS
    assert f[["var", "es", "pit"]].isna().all().all()  # rule-based models forecast no distribution
    assert (f["breach"] == (f["loss"] > f["margin"])).all()
    btc = f[(f["portfolio"] == "long BTC spot") & (f["model"] == "static")]
    assert btc["date"].iloc[0] == pd.Timestamp("2014-11-28", tz="UTC")
    opt = f[f["portfolio"].str.contains("strangle") & f["portfolio"].str.contains("BTC")]
    assert opt["date"].min() == pd.Timestamp("2021-03-24", tz="UTC")
    assert ("short BTC 25-delta strangle (30d, rolled at 7d)", "tiered") in res.not_applicable
    assert "n/a" in res.summary()
    eff = res.efficiency()
    assert {"excess_collateral", "shortfall_max", "peak_to_trough", "max_5d_increase"} <= set(eff.columns)
    cov = res.coverage(p=0.01)
    assert cov.loc[("long BTC spot", "static"), "breaches"] == btc["breach"].sum()


def test_metrics_closed_forms():
    market = toy_market([100.0, 90.0, 95.0, 80.0, 85.0])
    book = mm.FixedBook("two BTC", (mm.Position(mm.Spot("BTC"), 2.0),))
    res = Backtest(market, [book], [mm.make_model("static", rate=0.10)]).run()
    e = res.efficiency().loc[("two BTC", "static")]
    assert e["shortfall_total"] == pytest.approx(11.0) and e["shortfall_max"] == pytest.approx(11.0)
    # procyclicality on the model, not on the book: a frozen book under a flat-rate model has a constant margin per
    # unit notional, so no procyclicality (the margin itself swings from 20 to 16 with the price)
    assert e["peak_to_trough"] == pytest.approx(1.0, abs=1e-12)
    assert e["max_1d_increase"] == pytest.approx(0.0, abs=1e-12)
    # margins 20, 18, 19, 16 against losses 20, -10, 30, -10: the collateral left after the loss is 0 (consumed),
    # 18 and 16 (a gain consumes none and adds none) and 0 on the breach; at most the margin held
    assert e["excess_collateral"] == pytest.approx((0 + 18 + 0 + 16) / 4)
    assert e["excess_collateral"] <= e["mean_margin"]


@pytest.mark.parametrize("kwargs, message", [
    ({"mpor_days": 0}, "mpor_days must be an integer >= 1"),
    ({"start": "2010-01-01"}, "start 2010-01-01 is outside the market data"),
    ({"end": "2030-01-01"}, "end 2030-01-01 is outside"),
])
def test_bad_backtest_arguments(kwargs, message):
    market = toy_market([100.0, 90.0, 95.0])
    book = mm.FixedBook("b", (mm.Position(mm.Spot("BTC"), 1.0),))
    with pytest.raises(ValueError, match=message):
        Backtest(market, [book], [mm.make_model("static")], **kwargs)


def test_unknown_asset_in_portfolio_named():
    market = toy_market([100.0, 90.0, 95.0])
    book = mm.FixedBook("doge book", (mm.Position(mm.Spot("DOGE"), 1.0),))
    with pytest.raises(DataError, match=r"portfolio 'doge book': unknown asset\(s\) \['DOGE'\]"):
        Backtest(market, [book], [mm.make_model("static")])


def test_options_without_vol_named():
    market = toy_market([100.0, 90.0, 95.0])
    book = mm.FixedBook("opt", (mm.Position(mm.Option("BTC", "2021-02-01", 100.0, "call"), -1.0),))
    with pytest.raises(DataError, match=r"portfolio 'opt'.*implied vol"):
        Backtest(market, [book], [mm.make_model("static")]).run()


@pytest.mark.parametrize("make, message", [
    (lambda: mm.Position(mm.Spot("BTC"), float("nan")), "quantity must be a finite number"),
    (lambda: mm.Position("BTC", 1.0), "unknown instrument 'BTC'"),
    (lambda: mm.Option("BTC", "2021-01-01", -5.0, "call"), "strike must be a positive number"),
    (lambda: mm.Option("BTC", "2021-01-01", 5.0, "straddle"), "kind must be 'call' or 'put'"),
    (lambda: mm.FixedBook("empty", ()), "no positions"),
    (lambda: mm.make_model("garch_magic"), r"unknown margin model 'garch_magic'; registered models: \["),
    (lambda: mm.make_model("static", rait=0.1), r"unknown parameter\(s\) \['rait'\].*valid parameters: \['rate'"),
    (lambda: mm.make_model("static", rate=-0.1), r"static: rate must be in \(0.0, 1.0\]"),
    (lambda: mm.make_model("deribit_standard", level="gold"), "level must be 'initial' or 'maintenance'"),
])
def test_bad_items(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_coverage_tests_each_model_at_its_own_level_on_the_common_dates():
    """VaR 99% at p = 1%, ES 97.5% on its VaR at 2.5% (plus the ES tests), rule-based models at the study's p;
    cross-model tables on the dates every model of the book has a margin (the static model has more)."""
    market = ds.load_market(["BTC"], start="2019-01-01", end="2020-12-31")
    book = {"long BTC": mm.FixedBook("long BTC", (mm.Position(mm.Spot("BTC"), 1.0),))}
    models = {"static": mm.make_model("static", rate=0.08), "hs var": mm.make_model("historical_var", lookback=250),
              "hs es": mm.make_model("historical_es", lookback=250)}
    res = Backtest(market, book, models, start="2019-06-01").run()
    cov = res.coverage(default_p=0.02)
    assert cov["p"].to_dict() == {("long BTC", "static"): 0.02, ("long BTC", "hs var"): 0.01,
                                  ("long BTC", "hs es"): pytest.approx(0.025)}
    assert cov["observations"].nunique() == 1 and (cov["sample"] == "common").all()
    own = res.coverage(default_p=0.02, sample="own")
    assert own.loc[("long BTC", "static"), "observations"] > cov.loc[("long BTC", "static"), "observations"]
    f = res.to_frame()
    es_rows = f[(f["model"] == "hs es") & f["date"].isin(res.common_dates("long BTC"))]
    assert cov.loc[("long BTC", "hs es"), "breaches"] == int((es_rows["loss"] > es_rows["var"]).sum())
    assert (es_rows["margin"] >= es_rows["var"]).all()
    assert np.isfinite(cov.loc[("long BTC", "hs es"), "acerbi_szekely_z2_pvalue"])
    assert np.isnan(cov.loc[("long BTC", "hs var"), "acerbi_szekely_z2_pvalue"])
    # the PQD 6.5 disclosure counts breaches of the margin held (the ES), the headline exceptions of the VaR
    es_rep = res.coverage_report("long BTC", "hs es")
    total = es_rep.disclosure.loc["total"]
    shortfall = (es_rows["loss"] - es_rows["margin"])[es_rows["breach"]]
    assert total["exceptions"] == es_rows["breach"].sum() < es_rep.headline()["breaches"]
    assert total["largest_breach"] == shortfall.max() and np.isnan(total["target_coverage"])
    rep = res.coverage_report("long BTC", "hs var")
    assert rep.disclosure.loc["total", "target_coverage"] == 0.99  # a VaR margin: the margin is the tested VaR
    assert rep.headline()["kupiec_pvalue"] == cov.loc[("long BTC", "hs var"), "kupiec_pvalue"]
    assert "berkowitz_tail" in rep.tests  # the PIT of the forecast distribution is tested
    # every pair at once (each book's common dates cut once; the tests optionally on an executor) = pair by pair
    pairs = [("long BTC", m) for m in models]
    for sample in ("common", "own"):
        batch = res.coverage_reports(pairs, default_p=0.02, sample=sample)
        for pair in pairs:
            pd.testing.assert_frame_equal(batch[pair].to_frame(),
                                          res.coverage_report(*pair, default_p=0.02, sample=sample).to_frame())
    with pytest.raises(ValueError, match="no rows for portfolio 'long BTC' and model 'nope'"):
        res.coverage_reports([("long BTC", "nope")])
    from marginlab.validation.metrics import compute_metrics

    eff = res.efficiency()
    for pair in pairs:
        assert eff.loc[pair].drop("sample").to_dict() == pytest.approx(
            compute_metrics(res._rows(*pair, "common")), nan_ok=True, rel=0, abs=0)


def test_option_books_roll_on_cycles_that_do_not_depend_on_the_first_row_of_the_panel():
    """A panel loaded from 2022-01-01 holds the same options on the same dates as the full history (the roll cycle
    was anchored at the panel's first row: a different book on the same date, found by a reviewer)."""
    books = mm.reference_portfolios()
    full = ds.load_market(["BTC", "ETH"])
    short = ds.load_market(["BTC", "ETH"], start="2022-01-01", end="2022-06-30")
    names = ["short BTC 25-delta strangle (30d, rolled at 7d)", "BTC perpetual vs long 60d ATM call (delta-hedged "
             "daily, rolled at 30d)", "short BTC / long ETH ATM straddles, each delta-hedged with its perpetual"]
    for name in names:
        book = books[name]
        for t in short.index[short.index >= pd.Timestamp("2022-02-01", tz="UTC")]:
            assert book.positions_at(t, short) == book.positions_at(t, full), (name, t)
        held = short.index[book.held(short)]
        # 2022-01-01 .. the first cycle start inside the short panel: opened before it, not held
        assert held[0] > short.index[0] and held[-1] == short.index[-1]
        assert book.held(short)[short.index.get_loc(held[0]):].all()
        for t in held[held < pd.Timestamp("2022-02-01", tz="UTC")]:
            assert book.positions_at(t, short) == book.positions_at(t, full), (name, t)
        with pytest.raises(DataError, match=r"portfolio '.*': no position at 2022-01-01: its roll cycle began at "
                                            r"2021-12-"):
            book.positions_at(short.index[0], short)
    # the 23-day cycle is anchored at 2021-03-24's close (observed 2021-03-25 00:00): the options held on
    # 2022-01-17 were opened there (observed 2022-01-18 = anchor + 13 cycles); rolls every 23 days after
    strangle = books[names[0]]
    assert full.index[strangle._origin(full)] == pd.Timestamp("2021-03-24", tz="UTC")
    f = Backtest(short, [strangle], [mm.make_model("static")]).run().frame
    assert f["date"].iloc[0] == pd.Timestamp("2022-01-17", tz="UTC") == strangle.first_date(short)
    assert list(f.loc[f["book_changed"], "date"].dt.strftime("%m-%d"))[:3] == ["02-09", "03-04", "03-27"]


def test_notional_counts_only_the_positions_held_at_t():
    """A fixed book keeps an option and a future past their expiry (2022-03-04 08:00): from the 03-04 row
    (observed 03-05 00:00) only the spot counts (the notional counted the settled contracts, found by a reviewer)."""
    market = ds.load_market(["BTC"], start="2021-06-01", end="2022-03-31")
    expiry = "2022-03-04 08:00"
    book = mm.FixedBook("b", (mm.Position(mm.Option("BTC", expiry, 40000.0, "call"), -2.0),
                              mm.Position(mm.Future("BTC", expiry), 3.0), mm.Position(mm.Spot("BTC"), 1.0)))
    f = Backtest(market, [book], [mm.make_model("static")], start="2022-03-01", end="2022-03-08").run().frame
    close = market.prices["BTC"].reindex(f["date"]).to_numpy()
    held = (f["date"] < pd.Timestamp("2022-03-04", tz="UTC")).to_numpy()
    np.testing.assert_array_equal(f["notional"].to_numpy(), np.where(held, 6.0, 1.0) * close)


def test_the_apc_buffers_notional_is_the_engines():
    """overlays.gross_notional (the APC buffer's rate denominator) leaves out expired contracts, as the engine does."""
    from marginlab.models.overlays import gross_notional
    market = ds.load_market(["BTC"], start="2021-06-01", end="2022-03-31")
    book = mm.FixedBook("b", (mm.Position(mm.Option("BTC", "2022-03-04 08:00", 40000.0, "call"), -2.0),
                              mm.Position(mm.Spot("BTC"), 1.0)))
    f = Backtest(market, [book], [mm.make_model("static")], start="2022-03-01", end="2022-03-08").run().frame
    for t, notional in zip(f["date"], f["notional"], strict=True):
        assert gross_notional(book.positions, market, market.loc_of(t)) == pytest.approx(notional, rel=1e-12), t


def test_berkowitz_runs_on_a_historical_var_whose_realised_loss_exceeds_every_scenario():
    """BTC's move from 2020-03-11 to 03-12 (-39.0%) is beyond all of the 250 previous daily moves (the worst -13.2%):
    the PIT column holds the rank PIT 1/(2 x 251) there, not 0, and coverage_report's Berkowitz tail test has a
    finite statistic (with the PIT k/N = 0 it was not applicable, NaN)."""
    market = ds.load_market(["BTC"], start="2019-01-01", end="2020-06-30")
    book = {"long BTC spot": mm.FixedBook("long BTC spot", (mm.Position(mm.Spot("BTC"), 1.0),))}
    res = Backtest(market, book, {"hs": mm.make_model("historical_var", lookback=250)}, start="2020-02-01",
                   end="2020-04-30").run()
    f = res.to_frame()
    beyond = f[f["loss"] > f["margin"]]
    t = pd.Timestamp("2020-03-11", tz="UTC")  # the margin date: P&L over the next day
    assert t in set(beyond["date"]) and f.set_index("date").loc[t, "pit"] == 0.5 / 251
    assert ((f["pit"] > 0) & (f["pit"] < 1)).all()
    bt = res.coverage_report("long BTC spot", "hs", sample="own").tests["berkowitz_tail"]
    assert np.isfinite(bt.statistic) and np.isfinite(bt.pvalue) and bt.n_exceptions >= 1
