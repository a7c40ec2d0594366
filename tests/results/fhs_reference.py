"""FHS margins and daily filter fits of today's volatility specifications, frozen as a reference.

Computes, with whatever ``marginlab`` is importable:

* FHS VaR / ES margins (``fhs_garch``, 2,000 paths) of three reference books (one asset, two
  assets, a short BTC strangle: 2022 only) for every (vol, dist) in {garch, gjr, ewma} x {normal, t} on
  two date ranges (the bimodal BTC dates of late October 2022 and the COVID crash of March
  2020, where the Student-t fits sit on the stationarity boundary), plus a 10-day MPOR, a
  ``refit_every=3`` and a ``vol_floor="long_run"`` case;
* the daily warm-started fit chains (``fit_filter`` with yesterday's parameters and inverse
  Hessian) behind them: parameters, log-likelihood, one-step variance, iterations, status and
  SHA-256 digests of the conditional variances, standardised residuals and inverse Hessian.

``fhs_reference_eafa450.npz`` was produced by this script at commit eafa450 (the branch base,
``models/garch.py`` as it was), ``fhs_reference_14f0f03.npz`` at commit 14f0f03 (after four commits
that changed the arithmetic on purpose, each named in ``tests/test_volatility_reference.py``; the
last before ``models/garch.py`` became the ``models/volatility`` package)::

    python tests/results/fhs_reference.py tests/results/fhs_reference_14f0f03.npz

``fhs_reference_face_phase.npz`` holds the keys that the commit adding it moved (Student-t fits
on the stationarity face: the daily fit solves the problem on the face as soon as its iterates
lie there, and carries that problem's inverse Hessian to the next day): the keys of this
script's output that differ from ``fhs_reference_14f0f03.npz`` at that commit.
``fhs_reference_ewma_shape.npz`` likewise for the commit fitting EWMA's shape parameters (the
t's ν) by warm-started projected BFGS instead of scipy's bounded Brent (EWMA margins do not move).

The margins of those files came from the engine of their time (before the engine-model contract: models
carried their MPOR and seed, and the one-day FHS drew bootstrap paths). The engine has changed since, so
the margins are pinned by ``fhs_reference_margins_main.npz``, produced by this script on main at 70f249e
(the contract engine with ``models/garch.py``, just before the volatility package was merged)::

    python tests/results/fhs_reference.py tests/results/fhs_reference_margins_main.npz margins

``fhs_reference_margins_datekey.npz`` holds the margins keys this script's output moved at the riskmodels
fixes F3 (random draws and ``refit_every`` keyed by the date) and F4 (Acerbi-Tasche ES), those keys only.
``fhs_reference_margins_anchored.npz`` holds the margins keys this script's output moved at a1052c2 (the
long-run floor is the zero-mean variance) and 66e5c42 (fit chains anchored on the calendar), produced on main
at 9696819, those keys only.

``tests/test_volatility_reference.py`` recomputes everything and asserts exact equality (bit for bit) with
the newest file holding each key, and with the base file where no change was intended.
"""

from __future__ import annotations

import hashlib
import sys

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
from marginlab.validation import Backtest

SPECS = [(vol, dist) for vol in ("garch", "gjr", "ewma") for dist in ("normal", "t")]
BOOKS = ["long BTC spot", "long BTC / short ETH perpetuals", "short BTC 25-delta strangle (30d, rolled at 7d)"]
RANGES = {"2022-10": ("2022-10-20", "2022-11-08"), "2020-03": ("2020-03-05", "2020-03-20")}
#: (label, vol, dist, book, extra model parameters, mpor_days, range)
EXTRA = [("mpor10-garch-normal", "garch", "normal", "long BTC / short ETH perpetuals", {}, 10, "2022-10"),
         ("mpor10-gjr-t", "gjr", "t", "long BTC / short ETH perpetuals", {}, 10, "2022-10"),
         ("refit3-garch-t", "garch", "t", "long BTC spot", {"refit_every": 3}, 1, "2022-10"),
         ("floor-gjr-normal", "gjr", "normal", "long BTC spot", {"vol_floor": "long_run"}, 1, "2020-03")]
CHAINS = [("BTC", "2022-10"), ("BTC", "2020-03"), ("ETH", "2022-10")]
STATUS = {"ok": 0, "boundary": 1, "failed": 2, "reused": 3, "fixed": 4}


def _digest(a) -> np.ndarray:
    if a is None:
        return np.frombuffer(b"\0" * 32, dtype=np.uint8)
    return np.frombuffer(hashlib.sha256(np.ascontiguousarray(a, dtype=float).tobytes()).digest(), dtype=np.uint8)


def margins(market, vol: str, dist: str, books: list[str], rng: str, mpor_days: int = 1, **params) -> np.ndarray:
    """FHS VaR and ES margins, shape (n_books, 2, n_dates) (NaN where a book has no margin)."""
    start, end = RANGES[rng]
    refs = mm.reference_portfolios()
    models = {m: mm.make_model("fhs_garch", measure=m, vol=vol, dist=dist, n_paths=2000, **params)
              for m in ("var", "es")}
    frame = Backtest(market, {b: refs[b] for b in books}, models, mpor_days=mpor_days, start=start,
                     end=end).run().to_frame()
    dates = market.index[(market.index >= start) & (market.index <= end)]
    out = np.full((len(books), 2, len(dates)), np.nan)
    for (b, m), rows in frame.groupby(["portfolio", "model"]):
        pos = dates.get_indexer(rows["date"])
        out[books.index(b), ["var", "es"].index(m), pos] = rows["margin"].to_numpy()
    return out


def fit_chain(market, vol: str, dist: str, asset: str, rng: str) -> dict[str, np.ndarray]:
    """The daily warm-started fits of ``asset`` over ``rng`` (1,000-day windows, percent returns)."""
    from marginlab.models.volatility import FilterSpec, fit_filter

    start, end = RANGES[rng]
    r = np.log(market.prices[asset]).diff().to_numpy() * 100
    spec = FilterSpec.from_names(vol, dist)
    prev = None
    rows = {"params": [], "loglik": [], "sigma2_next": [], "iterations": [], "status": [], "digests": []}
    for t in market.index[(market.index >= start) & (market.index <= end)]:
        i = market.loc_of(t)
        fit = fit_filter(r[i - 999:i + 1], spec, warm_start=None if prev is None else prev.params,
                         warm_hessian=None if prev is None else prev.inv_hessian)
        rows["params"].append(np.asarray(fit.params, dtype=float))
        rows["loglik"].append(fit.loglik)
        rows["sigma2_next"].append(fit.sigma2_next)
        rows["iterations"].append(fit.iterations)
        rows["status"].append(STATUS[fit.status])
        rows["digests"].append(np.stack([_digest(fit.sigma2), _digest(fit.std_resids), _digest(fit.inv_hessian)]))
        prev = fit
    return {k: np.array(v) for k, v in rows.items()}


def compute(parts: tuple[str, ...] = ("margins", "chain")) -> dict[str, np.ndarray]:
    """Every reference array of ``parts``, keyed as stored in the .npz files."""
    market = ds.load_market(["BTC", "ETH"])
    out: dict[str, np.ndarray] = {}
    for vol, dist in SPECS:
        if "margins" in parts:
            for rng in RANGES:
                books = BOOKS if rng == "2022-10" else BOOKS[:2]  # implied vols (option books) from 2021 only
                out[f"margins/{vol}-{dist}/{rng}"] = margins(market, vol, dist, books, rng)
        if "chain" in parts:
            for asset, rng in CHAINS:
                for key, value in fit_chain(market, vol, dist, asset, rng).items():
                    out[f"chain/{vol}-{dist}/{asset}/{rng}/{key}"] = value
    if "margins" in parts:
        for label, vol, dist, book, params, h, rng in EXTRA:
            out[f"margins/{label}"] = margins(market, vol, dist, [book], rng, mpor_days=h, **params)
    return out


if __name__ == "__main__":
    parts = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ("margins", "chain")
    np.savez_compressed(sys.argv[1], **compute(parts))
