"""Option-scenario revaluations per second: the numba scenario kernel against vectorised NumPy, in one run.

The workload is SPAN's: 1,000 options x 16 scenarios (price moves 0, ±1/3, ±2/3, ±1 of a 12% scan
range with the vol up and down 25%, and the two extreme moves ±3 x 12%) x 1,500 dates, options
aged by one day in every scenario. Each date has its own spot (a random walk) and its own times to
expiry, as a backtest would.

(a) numba: the kernel :func:`marginlab.models.scenarios.revalue_grid` (``@njit(cache=True)``), one
    call per date on that date's option inputs and vol levels (built before timing), prices and
    deltas written in place;
(b) NumPy: the pricing module's vectorised Black-76 (``black76_price(..., use_numba=False)``) on
    the same (scenario x option) grid, 50 dates per call, prices only.

The two sides run alternately, three rounds each (a slow spell of a shared machine hits both);
the figures are the median rounds, per second of wall-clock time and per second of the process's
own CPU time (single-threaded: revaluations per core-second, which other work on a shared machine
moves much less). The run checks that both give the same prices (largest relative difference) and
prints ``uptime`` before and after; the ratio of the two sides is the robust number.

Usage: python benchmarks/bench_scenarios.py [--options 1000] [--dates 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import time

import numpy as np
from marginlab.models.pricing import black76_price
from marginlab.models.scenarios import revalue_grid
from marginlab.models.span import SPAN_PRICE_FRACTIONS, SPAN_VOL_DIRECTIONS

PSR, VSR, EXTREME, DAY = 0.12, 0.25, 3.0, 1.0 / 365.0


def workload(n_options: int, n_dates: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    spots = 40_000.0 * np.exp(np.cumsum(rng.normal(0, 0.03, n_dates)))
    strike_ratio = rng.uniform(0.6, 1.6, n_options)
    tau = rng.uniform(2 / 365, 0.5, (n_dates, n_options))
    vol = rng.uniform(0.3, 1.2, (n_dates, n_options))
    is_call = rng.random(n_options) < 0.5
    f = np.array(SPAN_PRICE_FRACTIONS) * PSR
    f[14:] *= EXTREME
    log_moves = np.log1p(f)[:, None]
    vol_index = np.array([{1: 1, -1: 2, 0: 0}[d] for d in SPAN_VOL_DIRECTIONS])
    return spots, strike_ratio * 40_000.0, tau, vol, is_call, log_moves, vol_index


def kernel_inputs(spots, strike, tau, vol, is_call, log_moves, vol_index):
    """Per date, the kernel's inputs: spot per option, aged times (1 level), vols (3 levels: same, up, down)."""
    n_dates, n = tau.shape
    spot = np.ascontiguousarray(np.repeat(spots[:, None], n, axis=1))
    taus = np.ascontiguousarray((tau - DAY)[:, None, :])
    vols = np.ascontiguousarray(np.stack([vol, vol * (1 + VSR), vol * (1 - VSR)], axis=1))
    return (spot, strike, is_call, np.zeros(n, dtype=np.int64), taus, vols, np.ascontiguousarray(log_moves),
            np.zeros(log_moves.shape[0], dtype=np.int64), vol_index.astype(np.int64))


def run_numba(out, spot, strike, is_call, asset, taus, vols, log_moves, time_index, vol_index):
    delta = np.empty(out.shape[1:])
    for d in range(spot.shape[0]):
        revalue_grid(spot[d], strike, is_call, asset, taus[d], vols[d], log_moves, time_index, vol_index, out[d],
                     delta)
    return out


def run_numpy(out, spots, strike, tau, vol, is_call, log_moves, vol_index, chunk: int = 50):
    factors = np.exp(log_moves[:, 0])
    vol_mult = np.array([1.0, 1.0 + VSR, 1.0 - VSR])[vol_index]
    for lo in range(0, len(spots), chunk):
        hi = min(lo + chunk, len(spots))
        f = spots[lo:hi, None, None] * factors[None, :, None]
        t = (tau[lo:hi] - DAY)[:, None, :]
        v = vol[lo:hi, None, :] * vol_mult[None, :, None]
        out[lo:hi] = black76_price(f, strike, t, v, is_call, use_numba=False)
    return out


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "uptime unavailable"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--options", type=int, default=1000)
    parser.add_argument("--dates", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = workload(args.options, args.dates)
    inputs = {"numba": kernel_inputs(*data), "numpy": data}
    n_values = args.options * 16 * args.dates
    print(f"load before: {uptime()}")
    # outputs allocated and touched before timing (first-touch page faults are not revaluation)
    results = {name: np.zeros((args.dates, 16, args.options)) for name in inputs}
    small = [x[:2] if k in (0, 4, 5) else x for k, x in enumerate(inputs["numba"])]
    run_numba(np.empty((2, 16, args.options)), *small)  # load the cached kernel
    times = {"numba": [], "numpy": []}
    cpu = {"numba": [], "numpy": []}
    for _ in range(args.rounds):
        for name, fn in (("numba", run_numba), ("numpy", run_numpy)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn(results[name], *inputs[name])
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    print(f"load after:  {uptime()}")
    med = {k: float(np.median(v)) for k, v in times.items()}
    med_cpu = {k: float(np.median(v)) for k, v in cpu.items()}
    a, b = results["numba"], results["numpy"]
    rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-8 * 40_000.0)))
    print(f"{args.options:,} options x 16 scenarios x {args.dates:,} dates = {n_values:,} option revaluations")
    for name in ("numba", "numpy"):
        print(f"  {name:5s}: {med[name]:7.3f} s wall (median of {args.rounds}) {n_values / med[name] / 1e6:7.1f} M/s;"
              f" {med_cpu[name]:7.3f} s CPU {n_values / med_cpu[name] / 1e6:7.1f} M/s per core")
    print(f"  numba / numpy speed: {med['numpy'] / med['numba']:.1f}x wall, {med_cpu['numpy'] / med_cpu['numba']:.1f}x"
          " CPU (single thread each)")
    print(f"  same prices: largest relative difference {rel:.1e}")
    if rel > 1e-10:
        raise SystemExit("numba and NumPy prices differ")


if __name__ == "__main__":
    main()
