"""Loaders on the bundled data, checked against the raw files; bad input errors."""

import marginlab.datasets as ds
import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES
from marginlab.datasets import DataError


def test_catalog_lists_every_dataset():
    cat = ds.catalog()
    names = set(cat["name"])
    for asset in ["btc", "eth", "sol", "xrp", "bnb", "ada", "doge", "trx", "bch", "ltc"]:
        assert f"prices_1d_{asset}" in names
    for name in ["prices_1h_btc", "prices_1h_eth", "implied_vol_1d_btc", "implied_vol_1d_eth",
                 "options_btc_deribit_eod", "funding_bitmex_xbtusd_8h",
                 "funding_deribit_btc_perpetual_1h", "funding_binance_btcusdt_1d"]:
        assert name in names
    assert not cat["source"].str.contains("Coin Metrics").any()
    btc = cat.set_index("name").loc["prices_1d_btc"]
    assert (btc["first"], btc["last"], btc["rows"]) == ("2014-11-28", "2025-11-26", 4017)


def test_known_closes_match_raw_files():
    btc = ds.load_prices("BTC")
    # values from ../shared/datasets/raw/btc_usd_daily_bitstamp_cdd.csv
    assert btc.loc["2014-11-28", "close"].item() == 376.28
    assert btc.loc["2025-11-26", "close"].item() == 90477.0
    assert btc.loc["2021-10-19", "close"].item() == 64241.61
    sol = ds.load_prices("SOL")
    assert sol.index[0] == pd.Timestamp("2020-08-11", tz="UTC")
    assert sol.iloc[0]["close"] == 3.2985
    assert sol.index[-1] == pd.Timestamp("2026-01-07", tz="UTC")


def test_hourly_prices():
    h = ds.load_prices("BTC", freq="1h")
    assert h.index[0] == pd.Timestamp("2017-08-17 05:00", tz="UTC")
    assert h.index[-1] == pd.Timestamp("2021-06-09 23:00", tz="UTC")
    assert h.loc["2021-06-09 23:00", "close"].item() == 37388.05
    assert not h.index.duplicated().any()
    with pytest.raises(DataError, match="gaps longer than 0"):
        ds.load_prices("BTC", freq="1h", max_gap=0)


def test_load_market_btc_eth():
    m = ds.load_market(["BTC", "ETH"])
    assert m.index[0] == pd.Timestamp("2014-11-28", tz="UTC")
    assert m.prices["ETH"].first_valid_index() == pd.Timestamp("2017-11-09", tz="UTC")
    assert m.implied_vol["BTC"].first_valid_index() == pd.Timestamp("2021-03-24", tz="UTC")
    assert m.implied_vol.loc["2021-03-24", "BTC"].item() == pytest.approx(0.9504)
    assert m.implied_vol.loc["2021-03-24", "ETH"].item() == pytest.approx(1.0673)
    assert ((m.index[1:] - m.index[:-1]) == pd.Timedelta(days=1)).all()
    assert m.funding.loc["2019-09-10", "BTC"].item() == pytest.approx(3e-4)


def test_load_implied_vol_and_funding_and_chains():
    iv = ds.load_implied_vol("ETH")
    assert iv.loc["2023-08-17"].item() == pytest.approx(0.4577)
    bm = ds.load_funding("bitmex")
    assert bm["interval_hours"].iloc[0] == 24 and bm["interval_hours"].iloc[-1] == 8
    db = ds.load_funding("deribit")
    assert db.index.is_monotonic_increasing and not db.index.duplicated().any()
    chains = ds.load_option_chains("2021-06-01", "2021-06-01")
    row = chains[chains["instrument"] == "BTC-1JUN21-30000-P"].iloc[0]
    assert row["mark_iv"] == pytest.approx(1.4958)
    assert row["expiry"] == pd.Timestamp("2021-06-01 08:00", tz="UTC")


@pytest.mark.parametrize("call, message", [
    (lambda: ds.load_market(["BTC", "FOO"]), r"unknown asset 'FOO'.*known assets: \['ADA'"),
    (lambda: ds.load_market(["BTC"], start="2010-01-01"), r"before the first observation 2014-11-28"),
    (lambda: ds.load_market(["BTC"], end="2030-01-01"), r"after the last observation 2025-11-26"),
    (lambda: ds.load_implied_vol("SOL"), r"unknown asset 'SOL' for implied_vol"),
    (lambda: ds.load_prices("BTC", freq="5m"), r"unknown frequency '5m'"),
    (lambda: ds.load_funding("okx"), r"unknown funding source 'okx'"),
    (lambda: ds.load_market(["BTC", "BTC"]), r"requested twice"),
])
def test_bad_requests(call, message):
    with pytest.raises(DataError, match=message):
        call()


@pytest.mark.parametrize("file, message", [
    ("user_nan.csv", r"user_nan.csv: column 'BTC' has missing/NaN.*2018-01-02"),
    ("user_negative.csv", r"user_negative.csv: column 'BTC' has non-positive values at 2018-01-02"),
    ("user_duplicate.csv", r"user_duplicate.csv: duplicate timestamps: 2018-01-02"),
    ("user_unsorted.csv", r"user_unsorted.csv: timestamps not sorted.*2018-01-02"),
    ("user_gap.csv", r"user_gap.csv: gaps longer than 0 step.*2018-01-02.*2018-01-05.*\(2 missing\)"),
    ("user_hourly.csv", r"user_hourly.csv: timestamps not on the 1d grid \(wrong frequency\?\)"),
])
def test_read_prices_bad_files(file, message):
    with pytest.raises(DataError, match=message):
        ds.read_prices(FIXTURES / file)


def test_read_prices_clean_csv_and_parquet(tmp_path):
    frame = ds.read_prices(FIXTURES / "user_clean.csv")
    assert list(frame.columns) == ["BTC", "ETH"] and frame.index.tz is not None
    hourly = ds.read_prices(FIXTURES / "user_hourly.csv", freq="1h")
    assert len(hourly) == 3
    pytest.importorskip("pyarrow")
    frame.to_parquet(tmp_path / "p.parquet")
    again = ds.read_prices(tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(frame, again, check_freq=False)


def test_read_prices_missing_column_and_file(tmp_path):
    with pytest.raises(DataError, match=r"missing column\(s\) \['SOL'\]"):
        ds.read_prices(FIXTURES / "user_clean.csv", columns=["SOL"])
    with pytest.raises(DataError, match="file not found"):
        ds.read_prices(tmp_path / "nope.csv")


def test_market_data_rejects_interior_nan():
    idx = pd.date_range("2020-01-01", periods=4, tz="UTC")
    prices = pd.DataFrame({"BTC": [1.0, np.nan, 2.0, 3.0]}, index=idx)
    with pytest.raises(DataError, match=r"'BTC' has NaN inside its history"):
        ds.MarketData(prices=prices, implied_vol=prices * np.nan)


def test_hourly_market_indexed_by_observed_hours():
    m = ds.load_market(["BTC", "ETH"], freq="1h", start="2020-12-20", end="2020-12-31")
    assert not m.prices.isna().any().any()
    steps = (m.index[1:] - m.index[:-1]) / pd.Timedelta(hours=1)
    # the maintenance gaps of 2020-12-21 (3 hours) and 2020-12-25 (1 hour) are kept, not filled
    assert sorted(steps[steps > 1]) == [2.0, 4.0]
    assert m.periods_per_year == 8760
