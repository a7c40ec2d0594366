"""The specialised kernels are cached on disk: a second process loads them instead of compiling.

Kernels specialised per (process, distribution) are copies of one template with their own
globals (``marginlab.models._numba.specialise``), not closures, because numba cannot cache a
closure over other kernels across processes (each run would compile again, ~30 s).
"""

import json
import os
import subprocess
import sys

import pytest
from marginlab.models._numba import NUMBA_ENABLED

SCRIPT = """
import json
import numpy as np
import marginlab.datasets as ds
from marginlab.models.volatility import FilterSpec, Garch, Normal, fit_filter
from marginlab.models.volatility.filter import _fit_kernels
from marginlab.models.volatility.likelihood import likelihood_kernels

x = (np.log(ds.load_prices("BTC")["close"]).diff().dropna() * 100).to_numpy()[2000:3000]
cold = fit_filter(x, FilterSpec())
warm = fit_filter(x[1:], FilterSpec(), warm_start=cold.params, warm_hessian=cold.inv_hessian)
lk = likelihood_kernels(Garch, Normal)
kernels = {"objective": lk.objective, "value_pass": lk.value_pass, "gradient_pass": lk.gradient_pass,
           "variance": lk.variance,
           "prepare": _fit_kernels(Garch, Normal).prepare, "daily_fit": _fit_kernels(Garch, Normal).daily_fit}
stats = {k: [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())] for k, d in kernels.items()}
print(json.dumps({"stats": stats, "loglik": warm.loglik}))
"""


@pytest.mark.skipif(not NUMBA_ENABLED, reason="numba's JIT is off")
def test_specialised_kernels_load_from_the_disk_cache_in_a_second_process(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    for name, (hits, misses) in first["stats"].items():
        assert misses >= 1 and hits == 0, name  # compiled (an empty cache)
    for name, (hits, misses) in second["stats"].items():
        assert misses == 0, name  # not compiled
        # loaded: the kernels called from Python (the others are compiled into these)
        assert hits >= 1 or name in ("value_pass", "gradient_pass"), name
    assert first["loglik"] == second["loglik"]
