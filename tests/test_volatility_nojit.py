"""The volatility tests once more with numba's JIT switched off (``NUMBA_DISABLE_JIT=1``), in a subprocess.

Each kernel is written once; with the JIT off it runs as the Python source it is, so coverage
sees the production code and both paths are held to the same independent references (arch,
scipy, closed forms). Tests marked ``compiled`` (long chains) are skipped there. Compiled code
does not warn on floating-point overflow (a block product of the likelihood pass overflowing
to inf, then redone with one log per term); NumPy scalars do, so numpy's RuntimeWarnings are
not turned into errors in that run.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from marginlab.models._numba import NUMBA_ENABLED

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/test_volatility_kernels.py", "tests/test_volatility_optimize.py", "tests/test_volatility_fit.py"]


@pytest.mark.skipif(not NUMBA_ENABLED, reason="already running without the JIT")
def test_volatility_tests_pass_with_the_jit_off():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-W",
           "ignore::RuntimeWarning", *FILES]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    tail = out.stdout[-4000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert " passed" in out.stdout and " failed" not in out.stdout, tail
