"""Static models against their rulebook formulas, computed by hand (venue tables: test_venue_models.py)."""

import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.datasets import MarketData


def market(btc=40_000.0, eth=2_000.0, vol=0.8):
    idx = pd.date_range("2021-06-01", periods=2, tz="UTC", name="time")
    p = pd.DataFrame({"BTC": [btc, btc], "ETH": [eth, eth]}, index=idx)
    return MarketData(prices=p, implied_vol=pd.DataFrame({"BTC": [vol, vol], "ETH": [vol, vol]}, index=idx))


T = pd.Timestamp("2021-06-01", tz="UTC")


def test_static_rates():
    book = [mm.Position(mm.Perpetual("BTC"), 10.0), mm.Position(mm.Spot("ETH"), -100.0)]
    m = mm.make_model("static", rate=0.1, rates={"ETH": 0.2}).margin(None, book, market(), T)
    assert m == pytest.approx(0.1 * 400_000 + 0.2 * 200_000)


def test_deribit_standard_futures_and_options():
    mk = market(btc=40_000.0, vol=0.8)
    fut = [mm.Position(mm.Perpetual("BTC"), 10.0), mm.Position(mm.Perpetual("BTC"), -4.0)]
    # 2021-06-01: the rule before 2022-01-11 (Deribit Support "11 January 2022"): IM 1%, MM 0.525% + 0.005%/BTC
    m = mm.make_model("deribit_standard").margin(None, fut, mk, T)
    assert m == pytest.approx((0.01 + 0.00005 * 6) * 6 * 40_000)
    mm_ = mm.make_model("deribit_standard", level="maintenance").margin(None, fut, mk, T)
    assert mm_ == pytest.approx((0.00525 + 0.00005 * 6) * 6 * 40_000)
    expiry = pd.Timestamp("2021-07-01 08:00", tz="UTC")
    call = mm.Option("BTC", expiry, 48_000.0, "call")
    tau = (expiry - (T + pd.Timedelta(days=1))) / pd.Timedelta(days=1) / 365  # the row of T is observed at T 24:00
    mark = float(mm.black76_price(40_000.0, 48_000.0, tau, 0.8, True))
    short = mm.make_model("deribit_standard").margin(None, [mm.Position(call, -2.0)], mk, T)
    # OTM 8000 -> 0.15 - 0.2 < 0.10 -> 0.10 x S + mark
    assert short == pytest.approx(2 * (0.10 * 40_000 + mark))
    put = mm.Option("BTC", expiry, 38_000.0, "put")
    pmark = float(mm.black76_price(40_000.0, 38_000.0, tau, 0.8, False))
    sp = mm.make_model("deribit_standard").margin(None, [mm.Position(put, -1.0)], mk, T)
    assert sp == pytest.approx((0.15 - 2_000 / 40_000) * 40_000 + pmark)
    maint = mm.make_model("deribit_standard", level="maintenance").margin(None, [mm.Position(put, -1.0)], mk, T)
    assert maint == pytest.approx(0.075 * 40_000 + pmark)
    long = mm.make_model("deribit_standard").margin(None, [mm.Position(put, 1.0)], mk, T)
    assert long == pytest.approx(pmark)


def test_deribit_standard_margins_each_contract_alone():
    """Deribit Support, "Margin types and usage": standard margin "is calculated separately for each position" and
    "doesn't offer any benefits for positions that either partially or fully hedge each other". A perpetual against a
    future (or a calendar spread) netted to zero margin before (found by a reviewer)."""
    mk = market(btc=40_000.0)
    model = mm.make_model("deribit_standard")
    perp = mm.Position(mm.Perpetual("BTC"), 10.0)
    alone = model.margin(None, [perp], mk, T)
    assert alone == pytest.approx((0.01 + 0.00005 * 10) * 10 * 40_000)  # 4,200 (the rule before 2022-01-11)
    march, june = mm.Future("BTC", "2021-09-24 08:00"), mm.Future("BTC", "2021-12-31 08:00")
    hedged = model.margin(None, [perp, mm.Position(march, -10.0)], mk, T)
    assert hedged == pytest.approx(2 * 4_200)
    assert model.margin(None, [mm.Position(march, 10.0), mm.Position(june, -10.0)], mk, T) == pytest.approx(2 * 4_200)
    # one contract held in two rows is one venue position: its rows net
    assert model.margin(None, [perp, mm.Position(mm.Perpetual("BTC"), -4.0)], mk, T) == pytest.approx(
        (0.01 + 0.00005 * 6) * 6 * 40_000)


def test_settled_options_and_futures_carry_no_margin():
    """An option or dated future expiring at or before a row's observation time has settled: no margin from the
    rule-based models, as from the scenario models (static and Deribit standard charged 10% of spot on a short call
    a day after its expiry, SPAN / Deribit PM / greeks netting 0; found by a reviewer)."""
    mk = market(btc=40_000.0)
    t0, t1 = mk.index  # observed 2021-06-02 00:00 and 2021-06-03 00:00
    expiry = pd.Timestamp("2021-06-02 08:00", tz="UTC")
    short_call = mm.Position(mm.Option("BTC", expiry, 44_000.0, "call"), -1.0)
    future = mm.Position(mm.Future("BTC", expiry), 2.0)
    perp = mm.Position(mm.Perpetual("BTC"), 1.0)
    static, deribit, tiered = (mm.make_model(n) for n in ("static", "deribit_standard", "tiered"))
    assert static.margin(None, [short_call], mk, t0) == pytest.approx(0.1 * 40_000)  # live on the first row
    assert static.margin(None, [short_call, perp], mk, t1) == pytest.approx(0.1 * 40_000)  # the perpetual only
    assert deribit.margin(None, [short_call], mk, t1) == 0.0
    assert deribit.margin(None, [future, perp], mk, t1) == deribit.margin(None, [perp], mk, t1) > 0
    assert tiered.margin(None, [future], mk, t0) > 0 and tiered.margin(None, [future], mk, t1) == 0.0
    span = mm.make_model("span", price_scan_range=0.12, vol_scan_range=0.25, net_option_value=False)
    assert span.margin(span.fit(mk, t1), [short_call], mk, t1) == 0.0


def test_margin_rises_with_position_size():
    mk = market()
    for name in ("static", "tiered", "deribit_standard"):
        model = mm.make_model(name)
        small = model.margin(model.fit(mk, T), [mm.Position(mm.Perpetual("BTC"), 1.0)], mk, T)
        big = model.margin(model.fit(mk, T), [mm.Position(mm.Perpetual("BTC"), 5.0)], mk, T)
        assert big > small > 0, name
    assert np.isfinite(small)
