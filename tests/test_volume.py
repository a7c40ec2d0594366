"""Traded volume as a market input: the bundled OHLCV volume, known with its bar's close."""

import marginlab.datasets as ds
import numpy as np
import pandas as pd


def test_volume_is_the_bundled_quote_volume_of_the_row_bar():
    market = ds.load_market(["BTC", "SOL"], start="2020-08-01", end="2021-01-31")
    for asset in ("BTC", "SOL"):
        bars = ds.load_prices(asset)["volume_quote"]
        got = market.volume[asset].dropna()
        pd.testing.assert_series_equal(got, bars.loc[got.index], check_names=False, check_freq=False)
    assert market.volume["SOL"].loc[:"2020-08-10"].isna().all()  # SOL listed on 2020-08-11
    assert market.volume_array.shape == market.price_array.shape


def test_volume_appears_only_once_its_bar_has_closed():
    cut = ds.load_market(["BTC"], freq="1h", as_of="2021-05-19 06:30")
    assert cut.volume.index[-1] == pd.Timestamp("2021-05-19 05:00", tz="UTC")  # the bar closing at 06:00
    full = ds.load_market(["BTC"], freq="1h", start="2021-05-18", end="2021-05-20")
    np.testing.assert_array_equal(cut.volume.loc["2021-05-18":].to_numpy(),
                                  full.volume.loc["2021-05-18":"2021-05-19 05:00"].to_numpy())
    assert full.truncate("2021-05-19").volume.index[-1] == pd.Timestamp("2021-05-19", tz="UTC")
