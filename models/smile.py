"""Implied-volatility smile: moved to :mod:`marginlab.datasets.smile` (the smile is a market input).

The fit happens once at load (``load_market(..., with_option_chains=True)``) and the
coefficients live in :attr:`marginlab.datasets.MarketData.smile`; this module re-exports
the functions under their former import path.
"""

from marginlab.datasets.smile import RATIO_BOUNDS, SMILE_COLUMNS, fit_smile, fit_smiles, smile_ratio

__all__ = ["fit_smile", "smile_ratio", "SMILE_COLUMNS", "fit_smiles", "RATIO_BOUNDS"]
