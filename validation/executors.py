"""Executors: where a backtest's tasks run (this process, a local Dask cluster, a remote Dask cluster).

An executor is any object with ``map(function, items) -> list`` returning
``[function(item) for item in items]`` in the order of ``items``
(:class:`marginlab.validation.engine.Executor`); :meth:`Backtest.run
<marginlab.validation.engine.Backtest.run>` hands it ``Backtest.run_task`` and the
run's tasks. Three are provided:

* :class:`SerialExecutor`: in this process, one task after the other;
* :class:`LocalExecutor`: a :class:`dask.distributed.LocalCluster` of worker
  processes on this machine (one thread each: the kernels hold the GIL);
* :class:`RemoteExecutor`: the workers of a running Dask scheduler
  (``tcp://host:8786``), e.g. started with ``dask scheduler`` and ``dask worker``.

The Dask executors ship ``function`` (for a backtest: the bound ``run_task``,
which carries the market data, the portfolios and the models) to every worker
**once** (``Client.scatter(..., broadcast=True)``), then submit one small task
per item that refers to it; the results come back in the order of the items.
A worker that dies mid-run loses its running tasks, which the scheduler
runs again elsewhere (each task is a pure function of its item); if it held the
last copy of the shipped function (Dask's active memory manager drops replicas
that no waiting task needs), the scheduler cancels the tasks that need it and
the executor ships the function again and reruns the unfinished tasks, so the
run completes on the survivors. Results are the same bytes whichever executor runs them: random
draws are keyed by the seed and the market row, estimates by window content
(:mod:`marginlab.models.context`), never by worker or order.

:func:`make_executor` builds one from the study's ``[execution]`` settings or the
command line (``marginlab run --executor serial|local [--workers N]`` or
``--scheduler tcp://host:8786``; :func:`add_executor_arguments` adds these flags to
any sub-command). ``executor = "auto"`` (the default) picks the local cluster
when at least two cores are free (:func:`free_cores`) and the run has more than
one task, else serial; the environment variable ``MARGINLAB_EXECUTOR``
(``serial``/``local``) overrides the automatic choice (the test suite sets it to
``serial``).

Given a :class:`~marginlab.validation.progress.Progress`, an executor advances its
bar as each task finishes (it draws only on a terminal: nothing in CI or when
redirected).
"""

from __future__ import annotations

import argparse
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .progress import Progress

__all__ = ["SerialExecutor", "DaskExecutor", "LocalExecutor", "RemoteExecutor", "EXECUTORS",
           "make_executor", "free_cores", "usable_cores", "add_executor_arguments", "executor_from_args",
           "WORKER_ENVIRON", "counting"]

#: How many times :meth:`DaskExecutor.map` ships its function when the cluster loses every copy of it.
SHIPMENTS = 3

#: Executor names accepted by :func:`make_executor`, the study key ``execution.executor`` and ``--executor``.
EXECUTORS = ("auto", "serial", "local", "remote")


def _bar(progress: Progress | None, done: int, total: int, label: str) -> None:
    if progress is not None:
        progress.bar(done, total, label)


@dataclass
class SerialExecutor:
    """Run every task in this process, in order."""

    progress: Progress | None = None
    label: str = "tasks"

    @property
    def workers(self) -> int:
        """One worker: this process."""
        return 1

    def map(self, function: Callable, items: Sequence) -> list:
        """``[function(item) for item in items]``, advancing ``progress``'s bar after each."""
        items = list(items)
        out = []
        _bar(self.progress, 0, len(items), self.label)
        for k, item in enumerate(items):
            out.append(function(item))
            _bar(self.progress, k + 1, len(items), self.label)
        return out

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def counting(executor: Any, label: str) -> Iterator[Any]:
    """``executor`` with its progress bar counting ``label`` (e.g. "figures") inside the block, then as before."""
    before = getattr(executor, "label", None)
    if before is None:
        yield executor
        return
    executor.label = label
    try:
        yield executor
    finally:
        executor.label = before


def _apply(function: Callable, item: Any) -> Any:
    """Run one task on a worker (``function`` arrives as the worker's replica of the shipped object)."""
    return function(item)


@dataclass
class DaskExecutor:
    """Run tasks on the workers of a :class:`dask.distributed.Client` (see the module docstring).

    Parameters
    ----------
    client : dask.distributed.Client
    progress : Progress, optional
        Its bar advances as tasks finish (:class:`~marginlab.validation.progress.Progress`; none by default).
    label : str
        What the bar counts.
    retries : int
        Extra attempts of a task that raised on a worker (a task lost with a dead worker is rescheduled
        by Dask regardless, up to ``distributed.scheduler.allowed-failures`` times).
    local : bool
        The workers are processes of this machine started from this interpreter (:func:`LocalExecutor`):
        work whose bytes depend on the installed libraries (the report's figures) may run there too.
    """

    client: Any
    progress: Progress | None = None
    label: str = "tasks"
    retries: int = 1
    local: bool = False
    _owns: list = field(default_factory=list, repr=False)

    @property
    def workers(self) -> int:
        """Number of workers connected now."""
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def map(self, function: Callable, items: Sequence) -> list:
        """``[function(item) for item in items]`` on the cluster, ``function`` shipped once to every worker.

        Each result is fetched as its task finishes. If the cluster loses every copy of the shipped
        function (a worker dies holding the last one: Dask's active memory manager drops the replicas
        that no waiting task needs), the scheduler cancels the tasks that need it; ``function`` is then
        shipped again and the unfinished tasks rerun, up to ``SHIPMENTS`` times in all.
        """
        items = list(items)
        if not items:
            return []
        results: dict[int, Any] = {}
        _bar(self.progress, 0, len(items), self.label)
        for _ in range(SHIPMENTS):
            pending = [k for k in range(len(items)) if k not in results]
            if not pending or not self._ship_and_run(function, items, pending, results):
                break
        if len(results) < len(items):
            raise RuntimeError(f"the Dask cluster lost the shipped work {SHIPMENTS} times (workers dying?): "
                               f"{len(items) - len(results)} of {len(items)} tasks did not finish")
        return [results[k] for k in range(len(items))]

    def _ship_and_run(self, function: Callable, items: list, pending: list[int], results: dict[int, Any]) -> bool:
        """Ship ``function``, run ``items[k]`` for k in ``pending`` into ``results``; True if the shipment was lost."""
        from dask.distributed import as_completed

        # the function (with the market data it carries) is sent to every worker once; tasks refer to it
        shipped = self.client.scatter(function, broadcast=True, hash=False)
        run = uuid.uuid4().hex[:8]
        futures = {self.client.submit(_apply, shipped, items[k], key=f"marginlab-{run}-{k}", pure=False,
                                      retries=self.retries): k for k in pending}
        try:
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()  # a task's own error is raised here
                except Exception:
                    if future.status in ("cancelled", "lost"):  # its input went with a dead worker
                        return True
                    raise
                _bar(self.progress, len(results), len(items), self.label)
            return False
        finally:
            self.client.cancel([*futures, shipped])

    def close(self) -> None:
        """Close the client (and the cluster) this executor started."""
        for thing in reversed(self._owns):
            thing.close()
        self._owns.clear()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Dask configuration under which marginlab starts its local workers. Dask's nanny starts every worker with
#: ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``: returns freed memory to the system
#: early); setting it switches off glibc's dynamic mmap threshold, so every NumPy temporary above 128 KiB (a
#: 10,000-scenario column of a few assets) is a fresh ``mmap`` whose pages fault in again: the models' array
#: arithmetic ran ~3x slower on a worker than in the parent process (measured: ``exp`` and two operations on
#: 10,000 x 4 floats 263-360 vs 76-130 us). ``None`` leaves the variable out of what the nanny sets (Dask's
#: documented override); the other entries (one BLAS/OpenMP thread) stay. It cannot remove one this process
#: already has (Dask's nanny writes its pre-spawn variables into the parent's ``os.environ``, so a plain Dask
#: cluster started earlier in the same process puts it back): workers inherit it, as anything set in the shell.
#: Workers of a remote cluster are started by their owner: start them the same way (README, "Execution").
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def LocalExecutor(workers: int | None = None, progress: Progress | None = None, label: str = "tasks",
                  **cluster_kwargs: Any) -> DaskExecutor:
    """A :class:`DaskExecutor` on a new :class:`dask.distributed.LocalCluster` of ``workers`` processes.

    ``workers`` defaults to :func:`usable_cores` (asking for a local cluster is asking for the machine's
    cores; the load average, which counts this user's own last run, decides only ``auto``); each worker has
    one thread. Close it (or use it
    as a context manager) to stop the cluster. Extra keyword arguments go to ``LocalCluster``.
    """
    import dask
    from dask.distributed import Client, LocalCluster

    n = workers if workers is not None else usable_cores()
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    # no dashboard; the scheduler's HTTP endpoints (health, metrics) on a free local port, not Dask's default 8787:
    # a second cluster (another run, a test's) would otherwise find it taken and warn
    options = {"n_workers": n, "threads_per_worker": 1, "processes": True, "dashboard_address": None,
               "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"}, "silence_logs": 40, **cluster_kwargs}
    with dask.config.set(WORKER_ENVIRON):
        cluster = LocalCluster(**options)
    client = Client(cluster)
    # local: worker processes started from this interpreter (threads of this process would share its matplotlib
    # state, which the report's figures set while drawing)
    return DaskExecutor(client, progress=progress, label=label, local=bool(options["processes"]),
                        _owns=[cluster, client])


def RemoteExecutor(scheduler: str, progress: Progress | None = None, timeout: float = 10.0,
                   label: str = "tasks") -> DaskExecutor:
    """A :class:`DaskExecutor` on the Dask scheduler at ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``).

    The workers must be able to import marginlab (the same version as here). Raises ValueError naming the
    address when no scheduler answers within ``timeout`` seconds.
    """
    from dask.distributed import Client

    if not isinstance(scheduler, str) or "://" not in scheduler:
        raise ValueError(f"scheduler must be an address such as tcp://host:8786, got {scheduler!r}")
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"no Dask scheduler answers at {scheduler} ({type(exc).__name__}: {exc})") from None
    return DaskExecutor(client, progress=progress, label=label, _owns=[client])


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def free_cores() -> int:
    """Cores this process may use that are not busy: usable cores minus the 1-minute load average, rounded."""
    usable = usable_cores()
    try:
        busy = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average
        busy = 0.0
    return max(0, int(math.floor(usable - busy + 0.5)))


def make_executor(executor: str = "auto", workers: int | None = None, scheduler: str | None = None,
                  n_tasks: int | None = None, progress: Progress | None = None, label: str = "tasks"):
    """The executor named by ``executor`` (see :data:`EXECUTORS` and the module docstring).

    ``"auto"``: the local cluster when ``workers`` > 1 or :func:`free_cores` >= 2, and ``n_tasks`` (if known) > 1,
    else serial (``MARGINLAB_EXECUTOR=serial|local`` overrides);
    a ``scheduler`` address means ``"remote"``. ``workers`` sets the local cluster's size (default: the free
    cores). Close the returned executor when done (all are context managers).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if scheduler is not None and executor not in ("auto", "remote"):
        raise ValueError(f"a scheduler address ({scheduler}) runs on that cluster: it cannot be combined with "
                         f"executor {executor!r}")
    if executor == "remote" or scheduler is not None:
        if scheduler is None:
            raise ValueError("executor 'remote' needs a scheduler address (e.g. tcp://host:8786)")
        return RemoteExecutor(scheduler, progress=progress, label=label)
    if executor == "auto":
        forced = os.environ.get("MARGINLAB_EXECUTOR", "").strip()
        if forced:
            if forced not in ("serial", "local"):
                raise ValueError(f"environment variable MARGINLAB_EXECUTOR must be 'serial' or 'local', "
                                 f"got {forced!r}")
            executor = forced
        else:
            many = n_tasks is None or n_tasks > 1
            executor = "local" if (workers is not None and workers > 1 or free_cores() >= 2) and many else "serial"
    if executor == "serial":
        return SerialExecutor(progress=progress, label=label)
    return LocalExecutor(workers=workers, progress=progress, label=label)


def add_executor_arguments(parser: argparse.ArgumentParser, books_per_task: bool = True,
                           title: str = "execution (overrides the study's [execution] section)") -> None:
    """Add ``--executor``, ``--workers``, ``--scheduler`` and ``--books-per-task`` to a (sub-)command's parser.

    ``books_per_task=False`` leaves ``--books-per-task`` out, for a command whose tasks are not groups of books
    (``marginlab sweep``: one task per grid point), so that the flag is refused rather than ignored.
    """
    group = parser.add_argument_group(title)
    group.add_argument("--executor", choices=[e for e in EXECUTORS if e != "remote"], default=None,
                       help="serial: this process; local: a Dask cluster on this machine's cores; auto (the "
                            "default): local when at least two cores are free or --workers is above 1")
    group.add_argument("--workers", type=int, default=None, help="worker processes of the local cluster "
                                                                 "(default: the usable cores)")
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on the Dask cluster of this scheduler, e.g. tcp://host:8786")
    if books_per_task:
        group.add_argument("--books-per-task", type=int, default=None, dest="books_per_task",
                           help="portfolios per task (default: chosen from the number of books and workers)")


def executor_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The execution settings given on the command line (None where not given), for ``run_study`` & co."""
    for name in ("workers", "books_per_task"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    executor = getattr(args, "executor", None)
    scheduler = getattr(args, "scheduler", None)
    if scheduler is not None:
        if executor not in (None, "auto"):
            raise ValueError(f"--scheduler runs on that cluster: it cannot be combined with --executor {executor}")
        executor = "remote"
    return {"executor": executor, "workers": getattr(args, "workers", None), "scheduler": scheduler,
            "books_per_task": getattr(args, "books_per_task", None)}
