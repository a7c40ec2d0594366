"""Executors: the same bytes on serial, local and remote Dask; a worker dying mid-run; the CLI flags."""

import io
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import cloudpickle
import marginlab.datasets as ds
import marginlab.models as mm
import pandas as pd
import pytest
from marginlab.validation import Backtest
from marginlab.validation.cli import build_parser, main
from marginlab.validation.executors import (
    LocalExecutor,
    SerialExecutor,
    executor_from_args,
    make_executor,
)
from marginlab.validation.progress import Progress

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the test module

MARKET = ds.load_market(["BTC", "SOL"], start="2020-01-01", end="2021-06-30")
BOOKS = [mm.ConstantNotionalBook("long BTC", ((mm.Spot("BTC"), 1e6),)),
         mm.ConstantNotionalBook("BTC vs SOL", ((mm.Perpetual("BTC"), 1e6), (mm.Perpetual("SOL"), -1e6)))]
MODELS = {"static": mm.make_model("static"),
          "fhs": mm.make_model("fhs_garch", lookback=200, min_obs=100, n_paths=500),
          "ewma": mm.make_model("ewma_var", lookback=200, min_obs=100, n_paths=500)}


@pytest.fixture(scope="module")
def backtest():
    bt = Backtest(MARKET, BOOKS, MODELS, start="2020-10-01", end="2021-01-31", mpor_days=2, seed=3)
    return bt, bt.run()


@pytest.fixture(scope="module")
def local():
    with LocalExecutor(2, progress=None) as ex:
        yield ex


def _same(a, b):
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
    pd.testing.assert_frame_equal(a.estimates, b.estimates, check_exact=True)
    assert a.diagnostics == b.diagnostics and a.not_applicable == b.not_applicable and a.warmup == b.warmup


def test_local_cluster_gives_the_serial_bytes(backtest, local):
    """Fails without the one-BLAS-thread rule of run_task: Dask workers run with one BLAS thread, this
    process with several, and the FHS fits' optimiser sums moved in the last bits (3e-7 relative in margins)."""
    bt, serial = backtest
    assert local.workers == 2
    _same(serial, bt.run(executor=local, books_per_task=1))
    _same(serial, bt.run(executor=local, split_models=False))


def _malloc_environment() -> dict:
    import os

    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def test_local_workers_keep_glibcs_dynamic_mmap_threshold(local):
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes every NumPy temporary above
    128 KiB a fresh mmap: the models' array arithmetic ran ~3x slower on a worker than here (executors.WORKER_ENVIRON).
    The local cluster's workers run without it, and still with one BLAS/OpenMP thread."""
    if "MALLOC_TRIM_THRESHOLD_" in __import__("os").environ:
        pytest.skip("MALLOC_TRIM_THRESHOLD_ is set in this process: workers inherit it")
    for env in local.client.run(_malloc_environment).values():
        assert env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class _KillOnce:
    """Wraps the task function: the first task run on a worker kills that worker's process (SIGKILL)."""

    def __init__(self, function, marker: Path):
        self.function, self.marker = function, marker

    def __call__(self, task):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return self.function(task)
        os.close(fd)
        time.sleep(0.5)  # let the other worker start its tasks: the death is mid-run
        os.kill(os.getpid(), signal.SIGKILL)


class _KillingExecutor:
    def __init__(self, inner, marker):
        self.inner, self.marker = inner, marker

    def map(self, function, items):
        return self.inner.map(_KillOnce(function, self.marker), items)


def test_a_worker_killed_mid_run_is_replaced_and_the_result_is_unchanged(backtest, local, tmp_path):
    bt, serial = backtest
    marker = tmp_path / "killed"
    before = set(local.client.scheduler_info()["workers"])
    result = bt.run(executor=_KillingExecutor(local, marker), books_per_task=1)
    assert marker.exists()  # a worker did die
    _same(serial, result)
    local.client.wait_for_workers(2, timeout=60)
    assert set(local.client.scheduler_info()["workers"]) != before  # the nanny started a new worker


def test_a_worker_dying_with_the_only_copy_of_the_shipped_work_is_survived(backtest, local, tmp_path, monkeypatch):
    """The shipped function is broadcast to every worker, but Dask's active memory manager drops replicas that
    no waiting task needs (ReduceReplicas): a worker dying then lost the only copy, the scheduler cancelled every
    task and the run failed ("cancelled for reason: already forgotten"; seen ~1 in 8 runs of the test above).
    Here the first shipment sits on one worker only and its tasks run there, and that worker dies: the executor
    ships the function again and reruns the tasks that had not finished, and the result is the serial one."""
    bt, serial = backtest
    client = local.client
    local.client.wait_for_workers(2, timeout=60)
    target = sorted(client.scheduler_info()["workers"])[0]
    scatter, submit, shipments = client.scatter, client.submit, []

    def scatter_to_one(data, **kwargs):
        shipments.append(data)
        if len(shipments) == 1:  # the first copy on one worker only (as the memory manager may leave it)
            return scatter(data, workers=[target], broadcast=False, hash=False)
        return scatter(data, **kwargs)

    def submit_to_one(*args, **kwargs):
        if len(shipments) == 1:  # the first shipment's tasks run where its copy is
            kwargs.update(workers=[target], allow_other_workers=False)
        return submit(*args, **kwargs)

    monkeypatch.setattr(client, "scatter", scatter_to_one)
    monkeypatch.setattr(client, "submit", submit_to_one)
    result = bt.run(executor=_KillingExecutor(local, tmp_path / "killed"), books_per_task=1)
    assert (tmp_path / "killed").exists() and len(shipments) == 2  # the worker died; the function went again
    _same(serial, result)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STUDY = """[study]
name = "remote"
seed = 4
[market]
assets = ["BTC", "ETH"]
start = 2021-01-01
end = 2021-04-30
[portfolios]
reference = ["long BTC spot", "long BTC / short ETH perpetuals"]
[[models]]
name = "static"
[[models]]
name = "fhs_garch"
params = { lookback = 300, min_obs = 100, n_paths = 500 }
[[models]]
name = "historical_var"
params = { lookback = 300, min_obs = 100 }
"""


def test_a_real_dask_scheduler_and_two_workers_give_the_serial_bytes(tmp_path, capsys):
    study = tmp_path / "remote.toml"
    study.write_text(STUDY)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    dask = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([*dask, "worker", address, "--nthreads", "1", "--no-dashboard",
                                           "--host", "127.0.0.1", "--no-nanny"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        from dask.distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        assert main(["run", str(study), "--scheduler", address, "--books-per-task", "1",
                     "--out", str(tmp_path / "remote")]) == 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    assert main(["run", str(study), "--executor", "serial", "--out", str(tmp_path / "serial")]) == 0
    capsys.readouterr()
    for name in ("backtest.csv", "coverage.csv", "metrics.csv"):
        assert (tmp_path / "remote" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), name


def test_no_scheduler_at_the_address_is_one_line(tmp_path, capsys):
    study = tmp_path / "s.toml"
    study.write_text(STUDY)
    assert main(["run", str(study), "--scheduler", f"tcp://127.0.0.1:{_free_port()}",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marginlab: error: no Dask scheduler answers at tcp://127.0.0.1:")


@pytest.mark.parametrize("argv, message", [
    (["--executor", "local", "--scheduler", "tcp://h:1"], "--scheduler runs on that cluster"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--books-per-task", "0"], "--books-per-task must be >= 1"),
])
def test_bad_executor_flags_are_one_line(argv, message, tmp_path, capsys):
    study = tmp_path / "s.toml"
    study.write_text(STUDY)
    assert main(["run", str(study), *argv, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_flags_are_reusable_by_other_subcommands():
    from marginlab.validation.executors import add_executor_arguments

    parser = build_parser()
    args = parser.parse_args(["run", "x.toml", "--executor", "serial", "--workers", "3"])
    assert executor_from_args(args) == {"executor": "serial", "workers": 3, "scheduler": None,
                                        "books_per_task": None}
    import argparse

    sweep = argparse.ArgumentParser()
    add_executor_arguments(sweep)
    assert executor_from_args(sweep.parse_args(["--scheduler", "tcp://h:8786"]))["executor"] == "remote"


def test_sweep_refuses_books_per_task(capsys):
    """A sweep runs one task per grid point: --books-per-task was accepted and silently ignored."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["sweep", "s.toml", "--grid", "g.toml", "--out", "o", "--books-per-task", "2"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --books-per-task 2" in capsys.readouterr().err
    args = build_parser().parse_args(["sweep", "s.toml", "--grid", "g.toml", "--out", "o", "--workers", "2"])
    assert executor_from_args(args)["books_per_task"] is None and executor_from_args(args)["workers"] == 2


def test_auto_choice_and_its_override(monkeypatch):
    monkeypatch.setenv("MARGINLAB_EXECUTOR", "serial")
    assert isinstance(make_executor("auto"), SerialExecutor)
    monkeypatch.setenv("MARGINLAB_EXECUTOR", "cluster")
    with pytest.raises(ValueError, match="MARGINLAB_EXECUTOR must be 'serial' or 'local'"):
        make_executor("auto")
    monkeypatch.delenv("MARGINLAB_EXECUTOR")
    monkeypatch.setattr("marginlab.validation.executors.free_cores", lambda: 1)
    assert isinstance(make_executor("auto"), SerialExecutor)
    monkeypatch.setattr("marginlab.validation.executors.free_cores", lambda: 4)
    assert isinstance(make_executor("auto", n_tasks=1), SerialExecutor)  # one task: nothing to spread
    with pytest.raises(ValueError, match="executor must be one of"):
        make_executor("threads")
    with pytest.raises(ValueError, match="needs a scheduler address"):
        make_executor("remote")


def test_a_local_cluster_asked_for_gets_the_usable_cores_whatever_the_load(monkeypatch):
    """The load average counts this user's own last run: right after a run it left one worker on two cores.
    An explicit local cluster sizes itself on the usable cores; only ``auto`` looks at the load."""
    import dask.distributed

    asked = {}

    class FakeCluster:
        def __init__(self, **options):
            asked.update(options)

        def close(self):
            pass

    monkeypatch.setattr(dask.distributed, "LocalCluster", FakeCluster)
    monkeypatch.setattr(dask.distributed, "Client", lambda cluster: types.SimpleNamespace(close=lambda: None))
    monkeypatch.setattr("marginlab.validation.executors.free_cores", lambda: 0)
    monkeypatch.setattr("marginlab.validation.executors.usable_cores", lambda: 2)
    with LocalExecutor():
        pass
    assert asked["n_workers"] == 2 and asked["threads_per_worker"] == 1
    with LocalExecutor(3):
        pass
    assert asked["n_workers"] == 3


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_executors_advance_the_one_progress_bar_on_a_terminal_only():
    quiet = io.StringIO()
    SerialExecutor(progress=Progress(stream=quiet), label="tasks").map(lambda x: x, [1, 2, 3])
    assert quiet.getvalue() == ""
    tty = _Tty()
    assert SerialExecutor(progress=Progress(stream=tty), label="tasks").map(lambda x: 2 * x, [1, 2]) == [2, 4]
    assert "2/2 tasks" in tty.getvalue() and tty.getvalue().endswith("\n")


def test_a_local_cluster_draws_the_figures_and_runs_coverage_tests_with_the_same_bytes(tmp_path, monkeypatch):
    """run_study keeps its local cluster up for the report: the figures (its slowest part) are drawn on the
    workers and the page is the one drawn here, byte for byte; coverage tests run there are the ones run here."""
    from marginlab.reports.writer import render_html
    from marginlab.validation.executors import DaskExecutor
    from marginlab.validation.study import parse_study, run_study

    mapped = []
    dask_map = DaskExecutor.map

    def spy(self, function, items):
        mapped.append((function.__name__, len(items), self.local))
        return dask_map(self, function, items)

    monkeypatch.setattr(DaskExecutor, "map", spy)
    import tomllib

    sr = run_study(parse_study(tomllib.loads(STUDY)), out=tmp_path / "local", executor="local", workers=2)
    drawn = [m for m in mapped if m[0] == "_draw"]
    assert len(drawn) == 1 and drawn[0][1] >= 4 and drawn[0][2] is True
    assert (tmp_path / "local" / "report.html").read_text(encoding="utf-8") == render_html(sr)
    # the coverage tests of every pair ran on the cluster, one task per book (beside the stress tests run
    # here): the reports, in order, and the coverage table are the ones run here
    assert ("_coverage_of_book", 2, True) in mapped
    assert len(sr.reports) == 6
    here = sr.backtest.coverage_reports(list(sr.reports))
    assert list(here) == list(sr.reports)
    for (book, model), report in sr.reports.items():
        pd.testing.assert_frame_equal(here[(book, model)].to_frame(), report.to_frame(), check_exact=True)
        pd.testing.assert_frame_equal(here[(book, model)].disclosure, report.disclosure, check_exact=True)
    pd.testing.assert_frame_equal(sr.backtest.coverage(reports=here, portfolios=list(dict.fromkeys(
        pf for pf, _ in sr.reports))), sr.coverage, check_exact=True)


def test_two_local_clusters_at_once_take_no_fixed_port(local, recwarn):
    """Each local cluster's scheduler serves its HTTP endpoints on a free port: a second one (another run, or a
    test's) used to find Dask's default 8787 taken and warn ("Port 8787 is already in use")."""
    with LocalExecutor(1) as other:
        assert other.workers == 1
    assert not [w for w in recwarn if "8787" in str(w.message)]
