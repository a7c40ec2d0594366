"""Speed of marginlab's daily-refit FHS-GARCH backtest against the naive arch loop, in one run.

(a) naive: every day ``arch_model(window, mean="Zero", vol="GARCH").fit()`` followed by arch's
    bootstrap forecast (10,000 simulations) and the 1% quantile of the simulated returns;
(b) marginlab: ``Backtest`` of a long-BTC book with ``fhs_garch`` (daily refit, warm-started,
    10,000 joint bootstrap paths, full revaluation).

Both on the same five years of BTC daily data with a 1,000-day window. (b) runs three times,
interleaved with the two halves of (a) so that a slow spell of a shared machine hits both sides;
the ratio is (a) over the median (b) run. Prints the wall-clock ratio and the agreement of the
estimates (log-likelihood, parameters, VaR).

Usage: python benchmarks/bench_fhs.py [--days N]   (N: number of days, default all ~1,826)
"""

from __future__ import annotations

import argparse
import time
import warnings

import marginlab.datasets as ds
import marginlab.models as mm
import numpy as np
import pandas as pd
from arch import arch_model
from marginlab.validation import Backtest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--paths", type=int, default=10_000)
    args = parser.parse_args()
    market = ds.load_market(["BTC"])
    end = market.index[-2]
    start = end - pd.Timedelta(days=5 * 365)
    dates = market.index[(market.index >= start) & (market.index <= end)]
    if args.days:
        dates = dates[: args.days]
    r = np.log(market.prices["BTC"]).diff().to_numpy() * 100
    lookback = 1000

    book = mm.FixedBook("1 BTC", (mm.Position(mm.Spot("BTC"), 1.0),))
    model = mm.make_model("fhs_garch", lookback=lookback, n_paths=args.paths, min_obs=lookback)

    # warm-up, timed separately: loads numba's compiled kernels from the cache (compiles them on the
    # very first run) and arch's code paths, so that (a) and (b) time the daily work only
    t0 = time.perf_counter()
    Backtest(market, [book], {"fhs": model}, start=dates[0], end=dates[4]).run()
    warm_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        i = market.loc_of(dates[0])
        arch_model(r[i - lookback + 1:i + 1], mean="Zero", vol="GARCH", p=1, q=1).fit(disp="off").forecast(
            horizon=1, method="bootstrap", simulations=args.paths, reindex=False)
    warm_naive = time.perf_counter() - t0

    def naive(days):
        """(a) the naive arch loop over ``days``: log-likelihoods, parameters, 1% quantiles, seconds."""
        out_ll, out_params, out_var = [], [], []
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t in days:
                i = market.loc_of(t)
                window = r[i - lookback + 1:i + 1]
                res = arch_model(window, mean="Zero", vol="GARCH", p=1, q=1).fit(disp="off")
                fc = res.forecast(horizon=1, method="bootstrap", simulations=args.paths, reindex=False)
                sims = fc.simulations.values[-1, :, 0]
                out_ll.append(res.loglikelihood)
                out_params.append(res.params.to_numpy())
                out_var.append(-np.quantile(sims, 0.01))
        return out_ll, out_params, out_var, time.perf_counter() - t0

    def ours():
        """(b) the marginlab backtest (one BTC unit, so that margin / price is the VaR of the return)."""
        t0 = time.perf_counter()
        res = Backtest(market, [book], {"fhs": model}, start=dates[0], end=dates[-1]).run()
        return res, time.perf_counter() - t0

    # interleaved, so that a slow spell of a shared machine does not fall on one side only:
    # (b), first half of (a), (b), second half of (a), (b); the ratio uses the median of the three (b)
    half = len(dates) // 2
    res, ours_1 = ours()
    ll_a, params_a, var_a, naive_1 = naive(dates[:half])
    res_2, ours_2 = ours()
    ll_b, params_b, var_b, naive_2 = naive(dates[half:])
    res_3, ours_3 = ours()
    naive_ll, naive_params, naive_var = ll_a + ll_b, params_a + params_b, var_a + var_b
    naive_s = naive_1 + naive_2
    ours_runs = sorted([ours_1, ours_2, ours_3])
    ours_s = ours_runs[1]
    repeatable = res.to_frame().equals(res_2.to_frame()) and res.to_frame().equals(res_3.to_frame())

    # estimates at the same dates: the model's own daily chain (warm parameters and inverse Hessian)
    from marginlab.models.garch import GarchSpec, fit_filter

    ll_rel, par_diff = [], []
    prev = None
    for k, t in enumerate(dates):
        i = market.loc_of(t)
        fit = fit_filter(r[i - lookback + 1:i + 1], GarchSpec("garch", "normal"),
                         warm_start=None if prev is None else prev.params,
                         warm_hessian=None if prev is None else prev.inv_hessian)
        prev = fit
        ll_rel.append((fit.loglik - naive_ll[k]) / abs(naive_ll[k]))
        par_diff.append(np.max(np.abs(fit.params - naive_params[k]) / np.maximum(np.abs(naive_params[k]), 1.0)))
    frame = res.to_frame().set_index("date")
    price = market.prices["BTC"].reindex(frame.index)
    ours_var = -100 * np.log1p(-frame["margin"] / price)  # loss quantile as a log-return, percent
    var_rel = np.abs(ours_var.to_numpy() / np.asarray(naive_var) - 1)

    print(f"days: {len(dates)} ({dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d}), window {lookback}, "
          f"paths {args.paths}")
    print(f"(a) naive arch fit + bootstrap forecast: {naive_s:8.2f} s  ({1e3 * naive_s / len(dates):.1f} ms/day; "
          f"halves {naive_1:.2f} + {naive_2:.2f} s)")
    print(f"(b) marginlab FHS backtest:              {ours_s:8.2f} s  ({1e3 * ours_s / len(dates):.2f} ms/day; "
          f"median of {ours_1:.2f}, {ours_2:.2f}, {ours_3:.2f} s; margins identical in the three runs: {repeatable})")
    print(f"speed-up (a)/(b): {naive_s / ours_s:.1f}x   (against the fastest / slowest (b) run: "
          f"{naive_s / ours_runs[0]:.1f}x / {naive_s / ours_runs[2]:.1f}x; one-off warm-up before timing: "
          f"marginlab {warm_ours:.2f} s, arch {warm_naive:.2f} s)")
    print(f"log-likelihood, (ours - arch)/|arch|: min {min(ll_rel):.2e}, median {np.median(ll_rel):.2e} "
          f"(>= -1e-6 means as good or better)")
    worst = int(np.argmin(ll_rel))
    print(f"worst log-likelihood date {dates[worst]:%Y-%m-%d}: arch params {np.round(naive_params[worst], 4)}")
    same = np.abs(np.asarray(ll_rel)) <= 1e-6
    par_same = np.asarray(par_diff)[same]
    print(f"parameters, max scaled |diff| on days with the same optimum: median {np.median(par_same):.2e}, "
          f"99th pct {np.quantile(par_same, 0.99):.2e}, max {par_same.max():.2e}")
    print(f"days where ours finds a higher optimum than arch (> 1e-6 relative): {int((~same).sum())} "
          f"of {len(dates)}")
    print(f"1-day 99% VaR, |ours / arch - 1| (independent bootstrap draws), days with the same optimum: "
          f"median {np.median(var_rel[same]):.3%}, 95th pct {np.quantile(var_rel[same], 0.95):.3%}; "
          f"other days: median {np.median(var_rel[~same]) if (~same).any() else float('nan'):.3%}")


if __name__ == "__main__":
    main()
