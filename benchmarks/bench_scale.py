"""Throughput of account-level backtests: serial, one Dask worker and two Dask workers, in one run.

Draws ``--accounts`` synthetic member accounts (:func:`marginlab.models.synthetic_accounts`, 1,000 by
default) over the last ``--years`` years of the bundled data (3 by default, ending 2024-12-31), and
backtests them through ``--models`` (``static``, ``historical_var``, ``fhs_garch`` by default) three
times: serially in this process, on a local Dask cluster of one worker, and of ``--workers`` workers
(2). Every run uses the same tasks (``books_per_task`` accounts with every model), so the three differ
only in where the tasks run; their results are checked identical (frame and estimates, bit for bit).

Prints, per executor: wall seconds, account-days per second (an account-day = one account on one margin
date, all models), account-day-models per second, and the peak resident memory of the process tree
(this process plus its Dask workers, sampled every 0.1 s); then the speed-up of the multi-worker run
over the one-worker run and over serial, and the measured cost per account-day-model from which the
README extrapolates larger runs. The load average is printed with each run: on a shared machine compare
the ratios, not the absolute figures.

Usage: python benchmarks/bench_scale.py [--accounts N] [--years Y] [--workers W] [--models a,b,c]
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time

import marginlab.datasets as ds
import marginlab.models as mm
import pandas as pd
import psutil
from marginlab.validation import Backtest
from marginlab.validation.executors import LocalExecutor, SerialExecutor


class PeakMemory:
    """Peak RSS (bytes) of this process and all its children, sampled on a thread."""

    def __init__(self, every: float = 0.1):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _warm(models: dict) -> None:
    """Import marginlab and load its numba kernels in this process (a worker): a small backtest."""
    market = ds.load_market(["BTC", "ETH", "SOL", "XRP"], start="2021-01-01", end="2022-03-31")
    table = mm.synthetic_accounts(2, seed=1, market=market, start="2021-06-01", end="2022-03-31")
    Backtest(market, mm.account_books(table), models, start="2022-03-01", end="2022-03-10").run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", default="static,historical_var,fhs_garch")
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()

    market = ds.load_market(["BTC", "ETH", "SOL", "XRP"], with_option_chains=True)
    end = pd.Timestamp("2024-12-31", tz="UTC")
    start = end - pd.Timedelta(days=round(365 * args.years))
    t0 = time.perf_counter()
    table = mm.synthetic_accounts(args.accounts, seed=args.seed, market=market, start=start, end=end)
    books = mm.account_books(table)
    print(f"{args.accounts} synthetic accounts, {len(table):,} position rows, drawn in "
          f"{time.perf_counter() - t0:.1f} s; margin dates {start:%Y-%m-%d} .. {end:%Y-%m-%d}")
    models = {name: mm.make_model(name) for name in args.models.split(",")}
    backtest = Backtest(market, books, models, start=start, end=end, seed=args.seed)
    per_task = max(1, math.ceil(len(books) / (4 * args.workers)))
    n_tasks = len(backtest.tasks(per_task, split_models=False))
    account_days = sum(len(backtest.portfolio_dates(name)) for name in books)
    print(f"{account_days:,} account-days x {len(models)} models; {n_tasks} tasks of {per_task} accounts")

    runs: dict[str, tuple[float, int]] = {}
    reference = None
    for label, make in (("serial", lambda: SerialExecutor(progress=None)),
                        ("1 worker", lambda: LocalExecutor(1, progress=None)),
                        (f"{args.workers} workers", lambda: LocalExecutor(args.workers, progress=None))):
        load = os.getloadavg()[0]
        with PeakMemory() as mem, make() as executor:
            # every process imports marginlab and loads the numba kernels first (timed separately): the run
            # measures the steady state, as on a long-lived cluster
            w = time.perf_counter()
            if hasattr(executor, "client"):
                executor.client.run(_warm, models)
            elif reference is None:
                _warm(models)
            warm = time.perf_counter() - w
            t = time.perf_counter()
            result = backtest.run(executor=executor, books_per_task=per_task, split_models=False)
            wall = time.perf_counter() - t
        runs[label] = (wall, mem.peak)
        if reference is None:
            reference = result
        else:
            pd.testing.assert_frame_equal(reference.frame, result.frame, check_exact=True)
            pd.testing.assert_frame_equal(reference.estimates, result.estimates, check_exact=True)
        print(f"{label:>10s}: {wall:8.1f} s  {account_days / wall:9.1f} account-days/s  "
              f"{account_days * len(models) / wall:9.1f} account-day-models/s  peak memory {mem.peak / 2**30:5.2f} GiB"
              f"  (load average {load:.2f} before, {os.getloadavg()[0]:.2f} after; warm-up {warm:.1f} s)")
    one, many, serial = runs["1 worker"][0], runs[f"{args.workers} workers"][0], runs["serial"][0]
    print(f"results identical on the three executors; speed-up of {args.workers} workers: {one / many:.2f}x over "
          f"1 worker, {serial / many:.2f}x over serial")
    cost = serial / (account_days * len(models))
    print(f"measured cost: {1e3 * cost:.3f} ms per account-day-model (serial, this machine); "
          f"{1e3 * serial / n_tasks:.0f} ms per task")


if __name__ == "__main__":
    main()
