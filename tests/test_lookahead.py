"""No look-ahead, proven for every registered model: margins on data truncated just after t
equal, bit for bit, those on the full data."""

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
import pytest

MARKET = ds.load_market(["BTC", "ETH"], start="2020-06-01", end="2022-04-30", with_option_chains=True)
BOOKS = {
    "linear": mm.reference_portfolios()["long BTC / short ETH perpetuals"],
    "options": mm.reference_portfolios()["short BTC 25-delta strangle (30d, rolled at 7d)"],
}
# include dates inside the option-chain months (smile in force) and outside them
DATES = [pd.Timestamp(d, tz="UTC") for d in ("2021-04-10", "2021-06-15", "2021-09-07", "2021-12-01",
                                             "2022-02-14")]


@pytest.mark.parametrize("name", sorted(mm.MODELS))
def test_no_lookahead(name):
    model = mm.make_model(name)
    finite = 0
    for book_name, book in BOOKS.items():
        for t in DATES:
            positions = book.positions_at(t, MARKET)
            if not model.applies_to(positions):
                continue
            full = model.margin(model.fit(MARKET, t), positions, MARKET, t)
            cut = MARKET.truncate(t)
            truncated = model.margin(model.fit(cut, t), book.positions_at(t, cut), cut, t)
            # bit for bit (NaN = no margin yet, during a model's warm-up, must match too)
            assert np.array_equal(np.float64(full), np.float64(truncated), equal_nan=True), (name, book_name, t)
            assert positions == book.positions_at(t, cut)
            finite += np.isfinite(full)
    assert finite > 0, f"{name}: no date with a margin was checked"


def test_registry_is_covered():
    # every registered model (present and future) is exercised above through MODELS
    assert {"static", "tiered", "deribit_standard"} <= set(mm.MODELS)
