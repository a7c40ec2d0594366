"""Speed of marginlab's daily-refit FHS backtest against the naive arch loop, for every filter specification.

For each (process, distribution) the package offers (``vol`` in garch, gjr, ewma, egarch x ``dist`` in
normal, t, skewt), on the same days of BTC daily data with a 1,000-day window:

(a) naive: every day ``arch`` fitted from scratch at the matching specification
    (``arch_model(window, mean="Zero", vol="GARCH"/"EGARCH", p=1, o=0/1, q=1, dist=...)``; EWMA:
    ``ZeroMean(window, volatility=EWMAVariance(0.94), distribution=...)``), then arch's bootstrap
    forecast (10,000 simulations) and the 1% quantile of the simulated returns;
(b) marginlab: ``Backtest`` of a long-BTC book with ``fhs_garch(vol=..., dist=...)`` (daily refit,
    warm-started, 10,000 joint bootstrap paths, full revaluation).

(b) runs three times, interleaved with the two halves of (a) so that a slow spell of a shared
machine hits both sides; the ratio is (a) over the median (b) run. Both sides are warmed up first
(numba kernels loaded or compiled, arch's code paths). The estimates are compared day by day: the
log-likelihood of marginlab's daily fit against arch's ("never below" means no day below arch's
by more than 1e-9 relative), and the parameters on days where the two reach the same optimum.

Usage: python benchmarks/bench_fhs.py [--days N] [--specs garch-normal,gjr-t,...] [--paths 10000]
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
from arch.univariate import EWMAVariance, Normal, SkewStudent, StudentsT, ZeroMean
from marginlab.models.volatility import FilterSpec, fit_filter
from marginlab.validation import Backtest

SPECS = [f"{v}-{d}" for v in ("garch", "gjr", "ewma", "egarch") for d in ("normal", "t", "skewt")]
LOOKBACK = 1000


def arch_fit(window: np.ndarray, vol: str, dist: str):
    """arch's fit of the matching specification (zero mean, percent returns)."""
    if vol == "ewma":
        law = {"normal": Normal(), "t": StudentsT(), "skewt": SkewStudent()}[dist]
        return ZeroMean(window, volatility=EWMAVariance(0.94), distribution=law).fit(disp="off")
    return arch_model(window, mean="Zero", vol="EGARCH" if vol == "egarch" else "GARCH", p=1,
                      o=int(vol in ("gjr", "egarch")), q=1, dist=dist).fit(disp="off")


def bench(spec: str, market, r: np.ndarray, dates, paths: int) -> dict:
    vol, dist = spec.split("-")
    book = mm.FixedBook("1 BTC", (mm.Position(mm.Spot("BTC"), 1.0),))
    model = mm.make_model("fhs_garch", vol=vol, dist=dist, lookback=LOOKBACK, n_paths=paths, min_obs=LOOKBACK)

    def naive(days):
        out_ll, out_params = [], []
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t in days:
                i = market.loc_of(t)
                res = arch_fit(r[i - LOOKBACK + 1:i + 1], vol, dist)
                fc = res.forecast(horizon=1, method="bootstrap", simulations=paths, reindex=False)
                np.quantile(fc.simulations.values[-1, :, 0], 0.01)
                out_ll.append(res.loglikelihood)
                out_params.append(res.params.to_numpy())
        return out_ll, out_params, time.perf_counter() - t0

    def ours():
        # each Backtest.run has its own context: no fit of a previous run is reused
        t0 = time.perf_counter()
        res = Backtest(market, [book], {"fhs": model}, start=dates[0], end=dates[-1]).run()
        return res, time.perf_counter() - t0

    Backtest(market, [book], {"fhs": model}, start=dates[0], end=dates[min(4, len(dates) - 1)]).run()  # warm-up
    naive(dates[:1])
    half = len(dates) // 2
    res_1, ours_1 = ours()
    ll_a, par_a, naive_1 = naive(dates[:half])
    res_2, ours_2 = ours()
    ll_b, par_b, naive_2 = naive(dates[half:])
    res_3, ours_3 = ours()
    runs = sorted([ours_1, ours_2, ours_3])
    naive_ll, naive_par = ll_a + ll_b, par_a + par_b
    frames = [x.to_frame() for x in (res_1, res_2, res_3)]
    repeatable = frames[0].equals(frames[1]) and frames[0].equals(frames[2])
    # the model's own daily chain (warm parameters and inverse Hessian), as in the backtest
    spec_obj = FilterSpec.from_names(vol, dist)
    ll_rel, par_diff, iterations = [], [], []
    prev = None
    for k, t in enumerate(dates):
        i = market.loc_of(t)
        fit = fit_filter(r[i - LOOKBACK + 1:i + 1], spec_obj, warm_start=None if prev is None else prev.params,
                         warm_hessian=None if prev is None else prev.inv_hessian)
        prev = fit
        iterations.append(fit.iterations)
        ll_rel.append((fit.loglik - naive_ll[k]) / abs(naive_ll[k]))
        ref = naive_par[k]
        par_diff.append(np.max(np.abs(fit.params - ref) / np.maximum(np.abs(ref), 1.0)) if ref.size else 0.0)
    ll_rel, par_diff = np.array(ll_rel), np.array(par_diff)
    same = np.abs(ll_rel) <= 1e-6
    naive_s = naive_1 + naive_2
    return {"spec": spec, "naive": naive_s, "ours": runs[1], "runs": runs, "ratio": naive_s / runs[1],
            "repeatable": repeatable, "ll_min": ll_rel.min(), "below": int((ll_rel < -1e-9).sum()),
            "higher": int((~same).sum()), "par_med": np.median(par_diff[same]) if same.any() else float("nan"),
            "par_max": par_diff[same].max() if same.any() else float("nan"), "iterations": np.mean(iterations)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=None, help="number of days (default: five years, ~1,826)")
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--specs", default=",".join(SPECS), help=f"comma-separated, from {','.join(SPECS)}")
    args = parser.parse_args()
    specs = args.specs.split(",")
    unknown = [s for s in specs if s not in SPECS]
    if unknown:
        raise SystemExit(f"unknown spec(s) {unknown}; choose from {SPECS}")
    market = ds.load_market(["BTC"])
    end = market.index[-2]
    dates = market.index[(market.index >= end - pd.Timedelta(days=5 * 365)) & (market.index <= end)]
    if args.days:
        dates = dates[: args.days]
    r = np.log(market.prices["BTC"]).diff().to_numpy() * 100
    print(f"days: {len(dates)} ({dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d}), window {LOOKBACK}, paths {args.paths}")
    print(f"{'spec':14s} {'naive s':>8s} {'ms/day':>7s} {'ours s':>7s} {'ms/day':>7s} {'ratio':>6s} "
          f"{'(slowest)':>9s} {'its/day':>7s} {'ll min rel':>11s} {'days <arch':>10s} {'days >arch':>10s} "
          f"{'par med':>8s} {'par max':>8s} same")
    for spec in specs:
        b = bench(spec, market, r, dates, args.paths)
        n = len(dates)
        print(f"{b['spec']:14s} {b['naive']:8.2f} {1e3 * b['naive'] / n:7.2f} {b['ours']:7.2f} "
              f"{1e3 * b['ours'] / n:7.3f} {b['ratio']:5.1f}x {b['naive'] / b['runs'][2]:8.1f}x "
              f"{b['iterations']:7.1f} {b['ll_min']:11.2e} {b['below']:10d} {b['higher']:10d} "
              f"{b['par_med']:8.1e} {b['par_max']:8.1e} {b['repeatable']}", flush=True)
    print("ratio: naive / median of three marginlab runs (slowest: against the slowest run); its/day: BFGS "
          "iterations per daily fit; ll min rel: min over days of (ours - arch) / |arch|; days <arch: days more "
          "than 1e-9 below arch; days >arch: days at a higher optimum (> 1e-6); par: max scaled |diff| on days "
          "with the same optimum; same: margins identical in the three runs")


if __name__ == "__main__":
    main()
