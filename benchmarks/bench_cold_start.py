"""Cold start: numba compilation of a fresh install, measured in fresh processes.

Runs a study (``studies/default.toml`` by default: every reference book and model of the default study)
serially (in the measured process) on a short stretch of data (its market
``start``/``end`` replaced; FHS needs 250 observations before its first margin), twice, each time
in a new Python process that shares one numba cache directory (numba's
``NUMBA_CACHE_DIR``, a new empty temporary directory, so the user's caches are neither used nor
touched):

1. **cold** — the cache is empty: every kernel the run uses is compiled (and written to the cache);
2. **warm** — the same run again: every kernel should load from the cache (no compilation).

For each run it prints the wall time of the import, of the backtest, and the time spent in numba
compilation (sum over the outermost compilations, measured with numba's ``numba:compile`` events;
wall and CPU time, the CPU time being the figure to compare on a shared machine; the kernels by CPU time),
the number of kernels compiled or loaded, and for the cold run the kernels that took longest.

Usage: python benchmarks/bench_cold_start.py [--study FILE] [--start 2021-01-01] [--end 2022-02-28]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def child(study: str, start: str, end: str) -> None:
    """One run in this (fresh) process; prints a JSON line with the timings."""
    t0 = time.perf_counter()
    from numba.core import event

    class Compilations(event.Listener):
        """Outermost compile time (wall and CPU), and each kernel's CPU time (own: its nested compilations excluded)."""

        def __init__(self):
            self.stack, self.outer, self.outer_cpu, self.own, self.by_entry = [], 0.0, 0.0, {}, {}

        def on_start(self, ev):
            disp = (ev.data or {}).get("dispatcher")
            name = getattr(getattr(disp, "py_func", None), "__qualname__", "?").split("__")[0]
            self.stack.append([time.perf_counter(), name, 0.0, time.process_time()])

        def on_end(self, ev):
            start, name, nested, cpu_start = self.stack.pop()
            cpu = time.process_time() - cpu_start  # the kernels by CPU time: the machine may be shared
            self.own[name] = self.own.get(name, 0.0) + cpu - nested
            if self.stack:
                self.stack[-1][2] += cpu
            else:
                self.outer += time.perf_counter() - start
                self.outer_cpu += cpu
                self.by_entry[name] = self.by_entry.get(name, 0.0) + cpu

    listener = Compilations()
    event.register("numba:compile", listener)
    import dataclasses

    from marginlab.validation.study import load_study, run_study

    t1 = time.perf_counter()
    config = dataclasses.replace(load_study(study), start=start, end=end)
    t2 = time.perf_counter()
    # serially in this process: the default executor may start Dask workers, which compile (or load) the kernels
    # in their own processes, out of this listener's sight (the counter read 0 that way)
    run_study(config, write=False, executor="serial")
    t3 = time.perf_counter()
    import gc

    from numba.core.registry import CPUDispatcher

    hits = misses = 0
    for obj in gc.get_objects():
        if isinstance(obj, CPUDispatcher) and obj._cache is not None and hasattr(obj, "stats"):
            hits += sum(obj.stats.cache_hits.values())
            misses += sum(obj.stats.cache_misses.values())
    top = sorted(listener.own.items(), key=lambda kv: -kv[1])[:12]
    entries = sorted(listener.by_entry.items(), key=lambda kv: -kv[1])
    print(json.dumps({"import": t1 - t0, "setup": t2 - t1, "backtest": t3 - t2, "compile": listener.outer,
                      "compile_cpu": listener.outer_cpu,
                      "loaded": hits, "compiled": misses, "top": top, "entries": entries}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default=os.path.join(os.path.dirname(__file__), "..", "studies", "default.toml"))
    parser.add_argument("--start", default="2021-01-01")
    parser.add_argument("--end", default="2022-02-28")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.study, args.start, args.end)
        return
    with tempfile.TemporaryDirectory(prefix="marginlab-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = {}
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--child", "--study", args.study, "--start", args.start,
                                  "--end", args.end], env=env, capture_output=True, text=True, check=True)
            runs[label] = json.loads(out.stdout.strip().splitlines()[-1])
            runs[label]["process"] = time.perf_counter() - t0
    print(f"study {os.path.basename(args.study)}, market data {args.start} .. {args.end}; numba cache: a new "
          f"empty directory shared by the two processes")
    for label, r in runs.items():
        print(f"{label}: process {r['process']:6.2f} s = import {r['import']:5.2f} s + setup {r['setup']:5.2f} s + "
              f"backtest {r['backtest']:6.2f} s (+ interpreter start/exit); numba compilation {r['compile']:6.2f} s "
              f"(CPU {r['compile_cpu']:6.2f} s); "
              f"kernels compiled {r['compiled']}, loaded from the cache {r['loaded']}")
    cold, warm = runs["cold"], runs["warm"]
    print(f"compile vs run (cold): compilation {cold['compile']:.2f} s (CPU {cold['compile_cpu']:.2f} s), "
          f"the rest of the backtest {cold['backtest'] - cold['compile']:.2f} s "
          f"(warm backtest: {warm['backtest']:.2f} s)")
    print("compilation CPU time by kernel called from Python (cold, each with the kernels it calls):")
    for name, secs in cold["entries"]:
        print(f"  {secs:6.2f} s  {name}")
    print("slowest compilations (cold, own CPU time without nested kernels):")
    for name, secs in cold["top"]:
        print(f"  {secs:6.2f} s  {name}")


if __name__ == "__main__":
    main()
