"""Venue margin models (``tiered``, ``deribit_standard``) against the venues' published numbers.

Reference values (bracket tables, maintenance amounts, Deribit's worked examples) and their
sources are in ``tests/results/venue_margin_reference.json``.
"""

import json
import math
from pathlib import Path

import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest
from marginlab.datasets import DataError, MarketData
from marginlab.models.static import bracket_requirement, deribit_option_margin_coin
from marginlab.models.venues import (
    BINANCE_USDM_TIERS,
    BINANCE_USDT_50X_2021,
    DERIBIT_STANDARD,
    BracketTable,
    DeribitParams,
)
from marginlab.validation import Backtest

REF = json.loads((Path(__file__).parent / "results" / "venue_margin_reference.json").read_text())
T = pd.Timestamp("2021-06-01", tz="UTC")
T_2024 = pd.Timestamp("2024-12-01", tz="UTC")  # the Deribit "Linear Perpetual" page's vintage (after 2022-01-11)


def market(start="2021-06-01", **prices):
    idx = pd.date_range(start, periods=3, tz="UTC", name="time")
    p = pd.DataFrame({a: [v, v * 0.9, v * 1.05] for a, v in prices.items()}, index=idx)
    vol = pd.DataFrame({a: [0.8, 0.8, 0.8] for a in prices}, index=idx)
    return MarketData(prices=p, implied_vol=vol)


def perp(asset, qty):
    return mm.Position(mm.Perpetual(asset), qty)


def _cap(c):
    return math.inf if c is None else float(c)


def _inside(brackets, k):
    """A notional strictly inside bracket k (the midpoint; 1.5x the floor in the open last bracket)."""
    floor = 0.0 if k == 0 else float(brackets[k - 1]["cap"])
    cap = _cap(brackets[k]["cap"])
    return 1.5 * floor if math.isinf(cap) else (floor + cap) / 2


# --- Binance brackets ------------------------------------------------------------------------

@pytest.mark.parametrize("contract, asset", [("BTCUSDT", "BTC"), ("ETHUSDT", "ETH"), ("XRPUSDT", "XRP")])
def test_shipped_tables_are_the_published_ones(contract, asset):
    ref = REF["binance_usdm"][contract]["brackets"]
    table = BINANCE_USDM_TIERS[asset]
    assert table.contract == contract
    assert table.caps == tuple(_cap(b["cap"]) for b in ref)
    assert table.maintenance == tuple(b["maintenance_rate"] for b in ref)
    if "initial_rate" in ref[0]:
        assert table.initial == tuple(b["initial_rate"] for b in ref)
        assert table.max_leverage() == pytest.approx([b["max_leverage"] for b in ref], rel=2e-3)
    else:
        assert table.initial is None
    assert table.verified is REF["binance_usdm"][contract]["verified"]
    alt = REF["binance_usdm"]["USDT 50x alt-coin table"]["brackets"]
    assert BINANCE_USDT_50X_2021.caps == tuple(_cap(b["cap"]) for b in alt)
    assert BINANCE_USDT_50X_2021.initial == tuple(b["initial_rate"] for b in alt)
    assert BINANCE_USDT_50X_2021.maintenance == tuple(b["maintenance_rate"] for b in alt)


@pytest.mark.parametrize("contract, asset", [("BTCUSDT", "BTC"), ("ETHUSDT", "ETH"), ("XRPUSDT", "XRP")])
def test_maintenance_in_each_bracket_matches_published_amounts(contract, asset):
    """N x rate - published maintenance amount, one notional inside every bracket."""
    ref = REF["binance_usdm"][contract]["brackets"]
    tiers = BINANCE_USDM_TIERS[asset].column("maintenance")
    for k, b in enumerate(ref):
        n = _inside(ref, k)
        expected = n * b["maintenance_rate"] - b["maintenance_amount"]
        assert bracket_requirement(n, tiers, "maintenance") == pytest.approx(expected, rel=1e-12), (contract, k)


def test_btc_initial_differs_from_maintenance_in_every_bracket():
    """Initial = N / max leverage of the position's bracket (Binance: notional / leverage)."""
    ref = REF["binance_usdm"]["BTCUSDT"]["brackets"]
    mk = market(BTC=40_000.0)
    initial, maint = mm.make_model("tiered", level="initial"), mm.make_model("tiered", level="maintenance")
    for k, b in enumerate(ref):
        n = _inside(ref, k)
        book = [perp("BTC", -n / 40_000.0)]
        im = initial.margin(None, book, mk, T)
        assert im == pytest.approx(n * b["initial_rate"], rel=1e-12)
        assert im == pytest.approx(n / b["max_leverage"], rel=2e-3)
        assert maint.margin(None, book, mk, T) == pytest.approx(n * b["maintenance_rate"] - b["maintenance_amount"])
        assert im > maint.margin(None, book, mk, T)
    # the default study's $1m book: 2% initial against 1% - 1,300 maintenance
    assert initial.margin(None, [perp("BTC", -25.0)], mk, T) == pytest.approx(20_000.0)
    assert maint.margin(None, [perp("BTC", -25.0)], mk, T) == pytest.approx(8_700.0)


@pytest.mark.parametrize("table", [*BINANCE_USDM_TIERS.values(), BINANCE_USDT_50X_2021], ids=lambda t: t.contract)
def test_maintenance_continuous_initial_jumps_at_every_edge(table):
    tiers = table.column("maintenance")
    for cap, _ in tiers[:-1]:
        below = bracket_requirement(cap, tiers)
        above = bracket_requirement(cap * (1 + 1e-12), tiers)
        assert above == pytest.approx(below, rel=1e-9)
    if table.initial is not None:
        init = table.column("initial")
        for (cap, rate), (_, nxt) in zip(init[:-1], init[1:], strict=True):
            jump = bracket_requirement(cap * (1 + 1e-12), init, "initial") - bracket_requirement(cap, init, "initial")
            assert jump == pytest.approx(cap * (nxt - rate), rel=1e-6)


def test_eth_uses_the_eth_table_not_btcs():
    mk = market(BTC=40_000.0, ETH=2_000.0)
    m = mm.make_model("tiered").margin(None, [perp("ETH", -150.0)], mk, T)
    # 300k in ETHUSDT's (100k, 500k] bracket: 1% - 365 (BTC's table would give 1% - 1,300)
    assert m == pytest.approx(300_000 * 0.01 - 365)
    book = [perp("BTC", 10.0), perp("ETH", -100.0)]
    assert mm.make_model("tiered").margin(None, book, mk, T) == pytest.approx(2_700.0 + 1_635.0)


def test_same_contract_nets_one_way_mode():
    mk = market(BTC=40_000.0)
    model = mm.make_model("tiered")
    netted = model.margin(None, [perp("BTC", 10.0), perp("BTC", -4.0)], mk, T)
    assert netted == pytest.approx(model.margin(None, [perp("BTC", 6.0)], mk, T))


def test_asset_without_table_is_not_applicable_and_named():
    mk = market(BTC=40_000.0, SOL=40.0, ETH=2_000.0)
    model = mm.make_model("tiered")
    assert model.applies_to([perp("BTC", 1.0)])
    assert not model.applies_to([perp("BTC", 1.0), perp("SOL", 10.0)])
    with pytest.raises(ValueError, match=r"no Binance maintenance bracket table for SOL \(SOL-PERP\); "
                                         r"maintenance tables exist for \['BTC', 'ETH', 'XRP'\]"):
        model.margin(None, [perp("SOL", 10.0)], mk, T)
    # ETH has no published initial column: not applicable at level="initial"
    initial = mm.make_model("tiered", level="initial")
    assert not initial.applies_to([perp("ETH", 1.0)])
    with pytest.raises(ValueError, match=r"no Binance initial bracket table for ETH .*tables exist for \['BTC'\]"):
        initial.margin(None, [perp("ETH", 1.0)], mk, T)
    # an explicit table makes it applicable
    sol = mm.make_model("tiered", asset_tiers={"SOL": BINANCE_USDT_50X_2021.column("maintenance")})
    assert sol.applies_to([perp("SOL", 10.0)])
    # 40k in the 50x table's (25k, 100k] bracket: 5% - 700
    assert sol.margin(None, [perp("SOL", -1_000.0)], mk, T) == pytest.approx(40_000 * 0.05 - 700)


@pytest.mark.parametrize("name", ["static", "tiered", "deribit_standard"])
def test_asset_missing_from_the_market_is_one_line_data_error(name):
    """A book on an asset the market lacks: DataError naming it, as the scenario models give (not KeyError)."""
    mk = market(ETH=2_000.0)
    with pytest.raises(DataError, match=r"^unknown asset\(s\) \['BTC'\]; the market data has \['ETH'\]$"):
        mm.make_model(name).margin(None, [perp("BTC", 1.0)], mk, T)


def test_spot_and_options_are_not_binance_futures():
    model = mm.make_model("tiered")
    assert not model.applies_to([mm.Position(mm.Spot("BTC"), 1.0)])
    with pytest.raises(ValueError, match="BTC is not a perpetual or future"):
        model.margin(None, [mm.Position(mm.Spot("BTC"), 1.0)], market(BTC=40_000.0), T)


def test_engine_reports_not_applicable():
    mk = market(BTC=40_000.0, SOL=40.0)
    books = [mm.FixedBook("sol perp", (perp("SOL", 10.0),)),
             mm.FixedBook("btc spot", (mm.Position(mm.Spot("BTC"), 1.0),)),
             mm.FixedBook("btc perp", (perp("BTC", -1.0),))]
    res = Backtest(mk, books, {"tiers": mm.make_model("tiered"), "deribit": mm.make_model("deribit_standard")}).run()
    assert {("sol perp", "tiers"), ("btc spot", "tiers"), ("btc spot", "deribit")} <= set(res.not_applicable)
    assert ("sol perp", "deribit") not in res.not_applicable and ("btc perp", "tiers") not in res.not_applicable
    assert "n/a" in res.summary()


def test_explicit_catch_all_table_and_bad_tables():
    mk = market(SOL=40.0)
    flat = mm.make_model("tiered", tiers=((math.inf, 0.05),))
    assert flat.margin(None, [perp("SOL", 100.0)], mk, T) == pytest.approx(200.0)
    for bad, message in [
        ({"level": "gold"}, "level must be 'initial' or 'maintenance'"),
        ({"tiers": ((100.0, 0.01), (50.0, 0.02))}, r"tiered: tiers: bracket caps must be .* strictly increasing"),
        ({"tiers": ((math.inf, 0.01), (50.0, 0.02))}, "strictly increasing"),
        ({"tiers": ((100.0, 0.01, 0.02),)}, r"tiers\[0\] must be a \[a positive number or inf, number\] list"),
        ({"asset_tiers": {"SOL": ((100.0, 1.5),)}}, r"asset_tiers\['SOL'\] rate must be in"),
        ({"asset_tiers": [("SOL", ((100.0, 0.1),))]}, "asset_tiers must be a table"),
    ]:
        with pytest.raises(ValueError, match=message):
            mm.make_model("tiered", **bad)
    with pytest.raises(ValueError, match="above the last bracket cap 500,000,000"):
        bracket_requirement(6e8, BINANCE_USDM_TIERS["BTC"].column("maintenance"))


def test_table_validation():
    kw = dict(contract="X", source="s", vintage="v", verified=False)
    with pytest.raises(ValueError, match="bracket table X: bracket caps must be"):
        BracketTable(caps=(10.0, 5.0), maintenance=(0.01, 0.02), initial=None, **kw)
    with pytest.raises(ValueError, match="2 brackets but 1 rates"):
        BracketTable(caps=(10.0, 20.0), maintenance=(0.01,), initial=None, **kw)
    with pytest.raises(ValueError, match="initial rate is below its maintenance"):
        BracketTable(caps=(10.0,), maintenance=(0.02,), initial=(0.01,), **kw)
    with pytest.raises(TypeError):
        BINANCE_USDM_TIERS["SOL"] = BINANCE_USDT_50X_2021  # the shipped tables are read-only


# --- Deribit standard margin ---------------------------------------------------------------

@pytest.mark.parametrize("ex", REF["deribit"]["linear_perpetual"]["examples"],
                         ids=lambda e: f"{e['currency']}-{e['size']}-{e['level']}")
def test_deribit_linear_perpetual_worked_examples(ex):
    """Deribit's own worked examples (BTC_USDC, SOL_USDC; a page of late 2024 or later) reproduced to the cent."""
    mk = market(start="2024-12-01", **{ex["currency"]: float(ex["index"])})
    model = mm.make_model("deribit_standard", level=ex["level"])
    m = model.margin(None, [perp(ex["currency"], -float(ex["size"]))], mk, T_2024)
    assert m == pytest.approx(ex["margin_usd"], rel=1e-12)
    assert m / ex["index"] == pytest.approx(ex["margin_coin"], rel=1e-12)


def test_deribit_per_asset_parameters():
    assert all(DERIBIT_STANDARD[a].futures_verified for a in ("BTC", "ETH", "SOL"))
    mk = market(start="2024-12-01", BTC=40_000.0, ETH=2_000.0, SOL=40.0)
    model = mm.make_model("deribit_standard")
    # SOL: 4% + 0.0005% per SOL (not BTC's 2% + 0.005% per BTC)
    assert model.margin(None, [perp("SOL", 1_000.0)], mk, T_2024) == pytest.approx((0.04 + 0.000005 * 1_000) * 40_000)
    # ETH: its own rule, 2% + 0.0004% per ETH (Deribit Support "11 January 2022"), no BTC price needed
    assert model.margin(None, [perp("ETH", -100.0)], mk, T_2024) == pytest.approx(0.0204 * 200_000)
    eth_only = market(start="2024-12-01", ETH=2_000.0)
    assert model.margin(None, [perp("ETH", -100.0)], eth_only, T_2024) == pytest.approx(0.0204 * 200_000)
    # futures net per currency; currencies are margined separately
    book = [perp("BTC", 10.0), perp("BTC", -4.0), perp("SOL", 1_000.0)]
    assert model.margin(None, book, mk, T_2024) == pytest.approx((0.02 + 0.00005 * 6) * 6 * 40_000
                                                                 + (0.04 + 0.005) * 40_000)


@pytest.mark.parametrize("asset, size, price, want", [
    # Deribit Support "11 January 2022", 'Current' (before) and 'New' (from 2022-01-11) rates, by hand:
    # BTC 25 BTC at $40,000 ($1m): IM 1% + 25 x 0.005% = 1.125% -> 2.125%; MM 0.525% + 0.125% = 0.65% -> 1.125%
    ("BTC", 25.0, 40_000.0, {"before": (11_250.0, 6_500.0), "from": (21_250.0, 11_250.0)}),
    # ETH 1,000 ETH at $3,000 ($3m): IM 2% + 1,000 x 0.0002% = 2.2% -> 2% + 0.4% = 2.4%; MM 1.2% -> 1.4%
    ("ETH", 1_000.0, 3_000.0, {"before": (66_000.0, 36_000.0), "from": (72_000.0, 42_000.0)}),
])
def test_deribit_futures_rule_in_force_on_each_date(asset, size, price, want):
    """The rule in force when t is observed: the row of 2022-01-09 (seen 01-10 24:00) before, 2022-01-10 from."""
    assert REF["deribit"]["futures_2022_01_11"]["verified"]
    idx = pd.date_range("2021-03-01", "2022-01-12", tz="UTC", name="time")
    mk = MarketData(prices=pd.DataFrame({asset: price}, index=idx), implied_vol=pd.DataFrame({asset: 0.8}, index=idx))
    for level, k in (("initial", 0), ("maintenance", 1)):
        model = mm.make_model("deribit_standard", level=level)
        for day, when in (("2021-03-01", "before"), ("2022-01-09", "before"), ("2022-01-10", "from"),
                          ("2022-01-12", "from")):
            t = pd.Timestamp(day, tz="UTC")
            assert model.margin(None, [perp(asset, -size)], mk, t) == pytest.approx(want[when][k], rel=1e-12), \
                (level, day)


def test_deribit_spot_is_not_a_future():
    mk = market(BTC=40_000.0)
    model = mm.make_model("deribit_standard")
    spot = [mm.Position(mm.Spot("BTC"), 25.0)]
    assert not model.applies_to(spot)
    assert not model.applies_to([mm.Position(mm.Spot("BTC"), 1.0), perp("BTC", -1.0)])
    with pytest.raises(ValueError, match="spot holding: Deribit's standard margin does not margin fully paid spot"):
        model.margin(None, spot, mk, T)


def test_deribit_applicability_sol_xrp():
    model = mm.make_model("deribit_standard")
    expiry = pd.Timestamp("2021-07-01 08:00", tz="UTC")
    assert model.applies_to([perp("SOL", 1.0)])
    assert not model.applies_to([perp("XRP", 1.0)])
    assert not model.applies_to([mm.Position(mm.Option("SOL", expiry, 50.0, "call"), -1.0)])
    assert model.applies_to([mm.Position(mm.Option("ETH", expiry, 2_500.0, "call"), -1.0)])
    mk = market(BTC=40_000.0, XRP=1.0, SOL=40.0)
    with pytest.raises(ValueError, match=r"no Deribit standard-margin parameters for XRP \(XRP-PERP\); "
                                         r"parameters exist for \['BTC', 'ETH', 'SOL'\]"):
        model.margin(None, [perp("XRP", 1.0)], mk, T)
    with pytest.raises(ValueError, match=r"Deribit SOL options .* are not modelled; options are modelled for "
                                         r"\['BTC', 'ETH'\]"):
        model.margin(None, [mm.Position(mm.Option("SOL", expiry, 50.0, "call"), -1.0)], mk, T)


def test_inverse_option_margin_in_coin_times_index():
    """Short BTC call: margin in BTC (Deribit's unit) x index = the USD margin reported."""
    s, k = 40_000.0, 48_000.0
    expiry = pd.Timestamp("2021-07-01 08:00", tz="UTC")
    mk = market(BTC=s)
    tau = (expiry - mk.observation_time[mk.loc_of(T)]) / pd.Timedelta(days=1) / 365  # from T's close
    mark_usd = float(mm.black76_price(s, k, tau, 0.8, True))
    mark_btc = mark_usd / s
    # OTM 8,000: 0.15 - 0.2 < 0.10, so initial = 0.10 BTC + mark; maintenance = 0.075 BTC + mark
    p = DERIBIT_STANDARD["BTC"]
    im_btc = deribit_option_margin_coin(True, k, s, mark_btc, True, "initial", p)
    mm_btc = deribit_option_margin_coin(True, k, s, mark_btc, True, "maintenance", p)
    assert im_btc == pytest.approx(0.10 + mark_btc, rel=1e-15)
    assert mm_btc == pytest.approx(0.075 + mark_btc, rel=1e-15)
    book = [mm.Position(mm.Option("BTC", expiry, k, "call"), -2.0)]
    usd = mm.make_model("deribit_standard").margin(None, book, mk, T)
    assert usd == pytest.approx(2 * im_btc * s, rel=1e-12)
    assert usd == pytest.approx(2 * (0.10 * s + mark_usd), rel=1e-12)
    assert mm.make_model("deribit_standard", level="maintenance").margin(None, book, mk, T) == pytest.approx(
        2 * mm_btc * s, rel=1e-12)
    # long options: the mark (fully paid premium), in coin x index
    assert deribit_option_margin_coin(True, k, s, mark_btc, False, "initial", p) == mark_btc


def test_deep_itm_short_put_rules_in_coin():
    """Short put: maintenance max(0.075, 0.075 mark) + mark; initial at least the maintenance."""
    p = DERIBIT_STANDARD["BTC"]
    # near the money: OTM 2,000 at index 40,000 -> initial (0.15 - 0.05) + mark
    assert deribit_option_margin_coin(False, 38_000.0, 40_000.0, 0.03, True, "initial", p) == pytest.approx(0.13)
    assert deribit_option_margin_coin(False, 38_000.0, 40_000.0, 0.03, True, "maintenance", p) == pytest.approx(
        0.105)
    # strike 3.25x the index: the put is worth 2.25 BTC; maintenance 0.075 x 2.25 + 2.25 = 2.41875 BTC exceeds the
    # call-style initial 0.15 + 2.25 = 2.4 BTC, so the initial is the maintenance
    assert deribit_option_margin_coin(False, 130_000.0, 40_000.0, 2.25, True, "maintenance", p) == pytest.approx(
        2.41875)
    assert deribit_option_margin_coin(False, 130_000.0, 40_000.0, 2.25, True, "initial", p) == pytest.approx(2.41875)


def test_deribit_parameter_validation():
    kw = dict(futures_source="s", futures_vintage="v", futures_verified=False, size_unit="X")
    with pytest.raises(ValueError, match="futures_initial must be in"):
        DeribitParams(futures_initial=1.5, futures_maintenance=0.01, futures_add_on=0.0, **kw)
    with pytest.raises(ValueError, match="all three option rates or none"):
        DeribitParams(futures_initial=0.02, futures_maintenance=0.01, futures_add_on=0.0,
                      option_initial_max=0.15, **kw)
    with pytest.raises(ValueError, match="futures_before must be .* with a futures_from date"):
        DeribitParams(futures_initial=0.02, futures_maintenance=0.01, futures_add_on=0.0,
                      futures_before=(0.01, 0.005, 0.0), **kw)
    with pytest.raises(ValueError, match="futures_before must be"):
        DeribitParams(futures_initial=0.02, futures_maintenance=0.01, futures_add_on=0.0, futures_from="2022-01-11",
                      futures_before=(0.01, 1.5, 0.0), **kw)
    with pytest.raises(ValueError, match="level must be 'initial' or 'maintenance'"):
        mm.make_model("deribit_standard", level="gold")
    assert np.isfinite(DERIBIT_STANDARD["BTC"].option_maintenance)
