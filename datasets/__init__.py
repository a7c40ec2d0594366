"""Bundled real market data, loaders and input validation.

``load_market(assets, start=None, end=None, freq="1d")`` returns a
:class:`MarketData` panel; ``catalog()`` lists the bundled datasets with their
sources and licences (see ``datasets/NOTICE.md``).
"""

from .accounts import PositionTable, read_positions
from .errors import DataError
from .inputs import MarketInputs
from .loaders import (
    catalog,
    known_assets,
    load_funding,
    load_implied_vol,
    load_market,
    load_option_chains,
    load_prices,
    market_inputs,
    read_prices,
)
from .market import MarketData

__all__ = [
    "DataError",
    "MarketData",
    "MarketInputs",
    "catalog",
    "known_assets",
    "load_funding",
    "load_implied_vol",
    "load_market",
    "load_option_chains",
    "load_prices",
    "market_inputs",
    "read_prices",
    "read_positions",
    "PositionTable",
]
