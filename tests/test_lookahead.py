"""No look-ahead, proven for every registered model from truncated inputs.

For each margin date t the market is rebuilt from what a participant knew at the observation
time of t (``load_market(..., as_of=...)``: price bars closed by then, DVOL and funding
published by then, option-chain snapshots quoted by then), aligned by the production code,
and every model's margin at t must equal, bit for bit, its margin on the full market. A leak
built into the alignment (e.g. a daily value copied onto the hours before it was published)
makes the two markets differ at t, which truncating the finished panel could not show.
Daily and hourly panels, MPOR 1 and 5 observations (the run context's ``mpor``: models build
h-observation moves from it), spot, perpetual, BTC and ETH option books and a dated future expiring
inside the MPOR, dates with and without the smile in force.
"""

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest

ASSETS = ["BTC", "ETH"]
PANELS = {
    "1d": dict(start="2020-06-01", end="2022-04-30"),
    "1h": dict(start="2021-02-01"),  # hourly data ends 2021-06-09; DVOL starts 2021-03-24
}
# daily: before, inside (2021-06-15, 2022-02-14) and between the chain months; hourly: the
# 2021-05-19 crash (a same-day DVOL copied onto its hours leaks the post-crash level) and two hours
# with a smile in force (02:00 is before that day's ~04:00 UTC snapshot: the previous day's smile)
DATES = {
    "1d": ["2021-04-10", "2021-06-15", "2021-09-07", "2021-12-01", "2022-02-14"],
    "1h": ["2021-04-20 13:00", "2021-05-19 05:00", "2021-06-02 02:00", "2021-06-05 10:00"],
}
BOOKS = {
    "linear": "long BTC / short ETH perpetuals",
    "spot": "long BTC spot",
    "options": "short BTC 25-delta strangle (30d, rolled at 7d)",
    "ETH options": "short ETH 25-delta strangle (30d, rolled at 7d)",
    "hedged options": "short BTC ATM straddle, delta-hedged daily",
}
MPORS = (1, 5)


def future_book(t: pd.Timestamp) -> mm.FixedBook:
    """Long a BTC future expiring 08:00 UTC three days after ``t`` (inside an MPOR of 5 days, after one of 1) against
    short ETH perpetuals."""
    expiry = t.normalize() + pd.Timedelta(days=3, hours=8)
    return mm.FixedBook("future", (mm.Position(mm.Future("BTC", expiry), 10.0),
                                   mm.Position(mm.Perpetual("ETH"), -150.0)))


@pytest.fixture(scope="module")
def markets():
    """Per frequency: the full market and, per date, the market known at the date's observation time."""
    out = {}
    for freq, kw in PANELS.items():
        full = ds.load_market(ASSETS, freq=freq, with_option_chains=True, **kw)
        known = {}
        for d in DATES[freq]:
            t = pd.Timestamp(d, tz="UTC")
            known[t] = ds.load_market(ASSETS, freq=freq, with_option_chains=True,
                                      as_of=full.observation_time[full.loc_of(t)], **kw)
        out[freq] = (full, known)
    return out


def test_known_market_ends_at_t_and_agrees_before(markets):
    for full, known in markets.values():
        for t, cut in known.items():
            assert cut.index[-1] == t
            i = full.loc_of(t)
            pd.testing.assert_frame_equal(cut.prices, full.prices.iloc[:i + 1])
            pd.testing.assert_frame_equal(cut.implied_vol, full.implied_vol.iloc[:i + 1])


@pytest.mark.parametrize("name", sorted(mm.MODELS))
def test_no_lookahead(name, markets):
    _check_no_lookahead(name, mm.make_model(name), markets)


def _hs():
    return mm.make_model("historical_var", lookback=250)


#: at least one overlaid model of each overlay (participation 1e-6 makes the $1m books illiquid, so the add-on
#: and the traded volume it reads are exercised)
OVERLAID = {
    "stressed_weight": lambda: mm.make_overlay("stressed_weight")(_hs()),
    "stressed_weight(fhs_garch)": lambda: mm.make_overlay("stressed_weight")(mm.make_model("fhs_garch")),
    "lookback_floor": lambda: mm.make_overlay("lookback_floor")(_hs()),
    "apc_buffer": lambda: mm.make_overlay("apc_buffer")(_hs()),
    "liquidity_addon": lambda: mm.make_overlay("liquidity_addon", participation=1e-6)(_hs()),
}


def test_every_overlay_is_exercised():
    assert {name.split("(")[0] for name in OVERLAID} == set(mm.OVERLAYS)


@pytest.mark.parametrize("name", sorted(OVERLAID))
def test_no_lookahead_overlaid(name, markets):
    _check_no_lookahead(name, OVERLAID[name](), markets)


@pytest.mark.parametrize("name", ["apc_buffer", "liquidity_addon"])
def test_no_lookahead_path_dependent_overlays(name, markets):
    """The APC buffer remembers the margin it called for the book on the previous date (in the run context):
    the dates before t are replayed in one context on the full market and on the market known at t, and the
    margin at t must be the same bit for bit (a fresh context at t starts with the full buffer on both)."""
    model = OVERLAID[name]()
    book = mm.reference_portfolios()[BOOKS["linear"]]
    checked = 0
    for full, known in markets.values():
        for t, cut in known.items():
            margins = []
            for market in (full, cut):
                context, state = mm.RunContext(), None
                i = market.loc_of(t)
                for j in range(max(0, i - 6), i + 1):
                    tj = market.index[j]
                    state = model.fit(market, tj, warm_start=state, context=context)
                    m = model.forecast(state, book.positions_at(tj, market), market, tj, book=book.name).margin
                margins.append(m)
            assert np.array_equal(np.float64(margins[0]), np.float64(margins[1]), equal_nan=True), (name, t, margins)
            checked += int(np.isfinite(margins[0]))
    assert checked > 0


def _check_no_lookahead(name, model, markets):
    finite = {}
    books = mm.reference_portfolios()
    # one run context per market and MPOR (the models read the MPOR from it), shared by the books and dates on
    # that market as the engine shares it: FHS fit chains start with a cold fit on the first row of the year (of the
    # month on hourly panels), and a fresh context per call would refit the chain up to t each time
    contexts = {}

    def context(market, h):
        return contexts.setdefault((id(market), h), mm.RunContext(mpor=h))

    for freq, (full, known) in markets.items():
        for t, cut in known.items():
            for kind in [*BOOKS, "future"]:
                book = future_book(t) if kind == "future" else books[BOOKS[kind]]
                if book.needs_implied_vol and not np.isfinite(full.vol_array[full.loc_of(t), 0]):
                    continue
                positions = book.positions_at(t, full)
                assert positions == book.positions_at(t, cut), (freq, book.name, t)
                if not model.applies_to(positions):
                    continue
                for h in MPORS:
                    m_full = model.margin(model.fit(full, t, context=context(full, h)), positions, full, t)
                    m_cut = model.margin(model.fit(cut, t, context=context(cut, h)), positions, cut, t)
                    # bit for bit (NaN = no margin yet, during a model's warm-up, must match too)
                    assert np.array_equal(np.float64(m_full), np.float64(m_cut), equal_nan=True), \
                        (name, freq, book.name, h, t, m_full, m_cut)
                    finite[freq, h] = finite.get((freq, h), 0) + int(np.isfinite(m_full))
    assert all(finite.get((freq, h), 0) > 0 for freq in PANELS for h in MPORS), f"{name}: no margin checked on {finite}"


def test_registry_is_covered():
    # every registered model (present and future) is exercised above through MODELS
    assert {"static", "tiered", "deribit_standard", "fhs_garch", "historical_var"} <= set(mm.MODELS)
