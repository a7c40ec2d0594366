"""Instruments, pricing, portfolios and margin models behind one interface.

``MODELS`` maps registered names to model classes; ``make_model(name, **params)``
builds one. Every model follows :class:`MarginModel`: ``fit(market, t,
warm_start=None, context=None)`` then ``margin(state, positions, market, t)``,
reading nothing after ``t``; the engine's :class:`RunContext` carries the MPOR
and the seed. ``OVERLAYS`` / ``make_overlay(name, **params)`` are the
anti-procyclicality and liquidity overlays: ``make_overlay("apc_buffer")(model)``
is an :class:`OverlaidModel`, itself a margin model.
"""

from . import deribit_pm, greeks_netting, simulation, span, static  # noqa: F401  (register the models)
from .accounts import STRATEGY_MIX, AccountBook, account_books, synthetic_accounts
from .base import MODELS, Forecast, MarginModel, ModelState, make_model, model_parameters, register
from .context import RunContext
from .deribit_pm import DERIBIT_PM_VINTAGES, DeribitPMVintage, DeribitPortfolioMargin
from .greeks_netting import GreeksNetting
from .instruments import Future, Instrument, Option, Perpetual, Position, Spot
from .overlays import OVERLAYS, OverlaidModel, Overlay, make_overlay, overlay_parameters, register_overlay
from .portfolios import (
    CombinedBook,
    ConstantNotionalBook,
    FixedBook,
    OptionLeg,
    OptionStrategy,
    Portfolio,
    reference_portfolios,
)
from .pricing import black76_greeks, black76_price, strike_from_delta
from .revaluation import mark_to_market, realised_pnl, revalue
from .simulation import EWMAVaR, FHSGarch, HistoricalES, HistoricalVaR
from .span import SpanMargin
from .static import DeribitStandardMargin, StaticMargin, TieredMargin
from .venues import BINANCE_USDM_TIERS, BINANCE_USDT_50X_2021, DERIBIT_STANDARD, BracketTable, DeribitParams

__all__ = [
    "MODELS",
    "MarginModel",
    "ModelState",
    "Forecast",
    "RunContext",
    "make_model",
    "OVERLAYS",
    "Overlay",
    "OverlaidModel",
    "make_overlay",
    "overlay_parameters",
    "register_overlay",
    "model_parameters",
    "register",
    "Instrument",
    "Spot",
    "Perpetual",
    "Future",
    "Option",
    "Position",
    "Portfolio",
    "FixedBook",
    "ConstantNotionalBook",
    "OptionLeg",
    "OptionStrategy",
    "CombinedBook",
    "reference_portfolios",
    "AccountBook",
    "account_books",
    "synthetic_accounts",
    "STRATEGY_MIX",
    "black76_price",
    "black76_greeks",
    "strike_from_delta",
    "revalue",
    "realised_pnl",
    "mark_to_market",
    "StaticMargin",
    "TieredMargin",
    "DeribitStandardMargin",
    "BracketTable",
    "DeribitParams",
    "BINANCE_USDM_TIERS",
    "BINANCE_USDT_50X_2021",
    "DERIBIT_STANDARD",
    "FHSGarch",
    "HistoricalVaR",
    "HistoricalES",
    "EWMAVaR",
    "SpanMargin",
    "DeribitPortfolioMargin",
    "DeribitPMVintage",
    "DERIBIT_PM_VINTAGES",
    "GreeksNetting",
]
