"""Wall-clock time of the default study end to end, and where it goes (per model, per phase).

Runs ``marginlab run studies/default.toml`` as the CLI does (``run_study`` with report writing into a
temporary folder), after a warm-up that loads numba's compiled kernels from the cache (compiles them on
the very first run; timed separately). Prints the end-to-end seconds, then each model's seconds (fit +
forecast, summed over its tasks: the engine's ``model_seconds``), the rest of the backtest (books,
realised P&L, merging) and, re-timed on the finished result, the coverage tests, the metrics and the
report writing; and the wall-clock seconds of each stage of the run itself (``run_study``'s progress
stages: loading, backtest, coverage tests, procyclicality, stress, report), where the report's figures
run on the workers of a local cluster.

On a shared machine the absolute figures move with the load: the script prints ``os.getloadavg()``
before and after; compare runs made under similar load, or repeat (``--repeat``).

Usage: python benchmarks/bench_default_study.py [--study FILE] [--executor serial|local] [--workers N]
       [--repeat K]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from marginlab.reports import write_report
from marginlab.validation.progress import Progress
from marginlab.validation.study import load_study, run_study

ROOT = Path(__file__).resolve().parents[1]


class StageClock(Progress):
    """A silent progress display that records when each of run_study's stages starts."""

    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.starts: list[tuple[str, float]] = []

    def stage(self, text: str) -> None:
        self.starts.append((text, time.perf_counter()))
        super().stage(text)

    def seconds(self, end: float) -> list[tuple[str, float]]:
        """Each stage's wall-clock seconds (the last one until ``end``)."""
        ends = [t for _, t in self.starts[1:]] + [end]
        return [(text, stop - start) for (text, start), stop in zip(self.starts, ends, strict=True)]


def _run(config, executor: str | None, workers: int | None) -> tuple[float, float, object, StageClock]:
    clock = StageClock()
    kwargs = {"progress": clock}
    if executor is not None:  # the executor options exist from issue 16 on
        kwargs.update(executor=executor, workers=workers)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_study(config, out=Path(tmp) / "report", **kwargs)
        return time.perf_counter() - t0, time.process_time() - c0, result, clock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default=str(ROOT / "studies" / "default.toml"))
    parser.add_argument("--executor", default=None, choices=["serial", "local"])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    config = load_study(args.study)
    t0 = time.perf_counter()
    warm = load_study(args.study)
    import dataclasses

    # warm-up on one month: numba kernels from the cache (or compiled), imports, bundled-data reads
    warm = dataclasses.replace(warm, start="2022-03-01", end="2022-03-31")
    run_study(warm, write=False, **({"executor": "serial"} if args.executor else {}))
    print(f"warm-up (imports, numba cache, data) {time.perf_counter() - t0:.1f} s")
    for k in range(args.repeat):
        load = os.getloadavg()
        total, cpu, result, clock = _run(config, args.executor, args.workers)
        done = time.perf_counter()
        bt = result.backtest
        print(f"\nrun {k + 1}: end to end {total:.1f} s, CPU of this process {cpu:.1f} s (load average before "
              f"{load[0]:.2f}, after {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores)")
        print(f"  backtest {bt.elapsed_s:.1f} s, of which per model (fit + forecast, summed over tasks):")
        for label, sec in bt.model_seconds.items():
            print(f"    {label:32s} {sec:7.1f} s")
        print(f"    {'books, realised P&L, merge':32s} {bt.elapsed_s - sum(bt.model_seconds.values()):7.1f} s"
              "  (serial: the rest of the backtest; on workers the model seconds overlap)")
        print("  wall-clock seconds per stage of the run (the report's figures are drawn on a local cluster's "
              "workers):")
        for text, sec in clock.seconds(done):
            print(f"    {text[:60]:60s} {sec:7.1f} s")
        print("  re-timed here in one process on the finished result:")
        t = time.perf_counter()
        bt.coverage(default_p=config.tail_prob)
        print(f"    coverage tests {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        bt.efficiency()
        print(f"    metrics {time.perf_counter() - t:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            write_report(result, Path(tmp) / "report")
            print(f"    report writing {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
