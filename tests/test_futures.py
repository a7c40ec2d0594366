"""Dated futures: settlement at expiry in the realised P&L, in the scenarios and in every model (hand-computed)."""

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.datasets import MarketData, read_positions
from marginlab.models.revaluation import book_state
from marginlab.validation import Backtest

EXPIRY = pd.Timestamp("2021-01-03 08:00", tz="UTC")


def toy_market(prices=(100.0, 90.0, 95.0, 80.0, 85.0)):
    idx = pd.date_range("2021-01-01", periods=len(prices), freq="D", tz="UTC", name="time")
    return MarketData(prices=pd.DataFrame({"BTC": prices}, index=idx, dtype=float),
                      implied_vol=pd.DataFrame({"BTC": np.nan}, index=idx, dtype=float))


@pytest.mark.parametrize("basis", [0.0, 0.01])
def test_a_future_settles_at_the_last_close_at_or_before_its_expiry(basis):
    # rows 01-01 .. 01-05 are observed at 01-02 .. 01-06 00:00; the future expires 01-03 08:00: its settlement
    # close is row 01-02's (90, observed 01-03 00:00); a constant basis is paid back at settlement
    market = toy_market()
    book = [mm.Position(mm.Future("BTC", EXPIRY, basis=basis), 2.0)]
    day = market.index
    assert mm.realised_pnl(book, market, day[0], 1) == pytest.approx(2 * (1 + basis) * (90 - 100), abs=1e-12)
    assert mm.realised_pnl(book, market, day[0], 3) == pytest.approx(2 * (90 - 100 * (1 + basis)), abs=1e-12)
    assert mm.realised_pnl(book, market, day[1], 1) == pytest.approx(2 * (90 - 90 * (1 + basis)), abs=1e-12)
    assert mm.realised_pnl(book, market, day[2], 1) == 0.0  # expired at or before the observation of t
    assert mm.realised_pnl(book, market, day[3], 1) == 0.0


@pytest.mark.parametrize("basis", [0.0, 0.01])
def test_scenarios_settle_a_future_as_the_realised_pnl_does(basis):
    market = toy_market()
    book = [mm.Position(mm.Future("BTC", EXPIRY, basis=basis), 2.0), mm.Position(mm.Perpetual("BTC"), -1.0)]
    t = market.index[0]
    # settles inside a 3-day horizon: at the shocked spot, the basis paid back (the realised P&L with the
    # settlement close 90 as the scenario)
    realised = mm.realised_pnl(book[:1], market, t, 3) - (90 - 100)
    assert mm.revalue(book, market, t, [np.log(0.9)], horizon=3)[0] == pytest.approx(realised, abs=1e-9)
    # lives past a 1-day horizon: (1 + basis) x the spot move
    assert mm.revalue(book, market, t, [np.log(0.9)], horizon=1)[0] == pytest.approx(
        mm.realised_pnl(book, market, t, 1), abs=1e-9)
    # expired at or before t: no exposure (the perpetual alone)
    late = market.index[2]
    assert mm.revalue(book, market, late, [0.1, -0.2], horizon=1) == pytest.approx(-95 * np.expm1([0.1, -0.2]))
    state = book_state(mm.revaluation.book_arrays(book), market, 2)
    assert list(state.linear) == [0.0, -1.0]


def test_an_expired_future_has_no_margin_and_no_loss_in_any_model():
    """The reviewer's case: 10 BTC of a future expiring 2022-03-04 08:00, held as a fixed book past its expiry."""
    market = ds.load_market(["BTC"], start="2021-01-01", end="2022-03-31")
    fut = mm.Future("BTC", "2022-03-04 08:00")
    book = mm.FixedBook("fut", (mm.Position(fut, 10.0),))
    names = [n for n in mm.MODELS if n != "fhs_garch"]
    f = Backtest(market, [book], [mm.make_model(n) for n in names], mpor_days=3, start="2022-02-28",
                 end="2022-03-10").run().frame
    assert sorted(set(f["model"])) == sorted(names)
    close = market.prices["BTC"]
    d = pd.Timestamp("2022-03-02", tz="UTC")
    # t = 03-02 (observed 03-03 00:00): settles at row 03-03's close (observed 03-04 00:00 <= 08:00)
    pnl = f[f["date"] == d]["pnl"].unique()
    assert pnl == pytest.approx([10 * (close["2022-03-03"] - close["2022-03-02"])], rel=1e-12)
    assert f[f["date"] == pd.Timestamp("2022-03-03", tz="UTC")]["pnl"].unique().tolist() == [0.0]
    late = f[f["date"] >= pd.Timestamp("2022-03-04", tz="UTC")]
    assert len(late) and (late["pnl"] == 0.0).all() and (late["margin"] == 0.0).all()
    assert not late["breach"].any()
    live = f[f["date"] <= pd.Timestamp("2022-03-03", tz="UTC")]
    assert (live["margin"] > 0).all()


def test_an_account_holding_a_future_through_its_expiry(tmp_path):
    market = ds.load_market(["SOL"], start="2021-01-01", end="2022-06-30")
    path = tmp_path / "pos.csv"
    path.write_text("date,account,instrument,asset,quantity,expiry,strike,kind\n"
                    "2022-03-01,B2,future,SOL,100,2022-03-25 08:00,,\n")
    account = mm.account_books(read_positions(path, market=market))["B2"]
    f = Backtest(market, [account], [mm.make_model("static"), mm.make_model("historical_var")], mpor_days=3,
                 start="2022-03-01", end="2022-04-10").run().frame
    close = market.prices["SOL"]
    settle = close["2022-03-24"]  # observed 2022-03-25 00:00, the last close before the 08:00 expiry
    for t, pnl in f[f["model"] == "static"].set_index("date")["pnl"].items():
        end = min(market.index.get_loc(t) + 3, market.index.get_loc(pd.Timestamp("2022-03-24", tz="UTC")))
        expected = 100 * ((settle if end == market.index.get_loc(pd.Timestamp("2022-03-24", tz="UTC"))
                           else close.iloc[end]) - close[t])
        assert pnl == pytest.approx(expected, rel=1e-12, abs=1e-9), t
    assert f["date"].max() == pd.Timestamp("2022-03-24", tz="UTC")
    assert f[f["date"] == f["date"].max()]["pnl"].tolist() == [0.0, 0.0]
