"""FHS margins and daily fits bit for bit equal to those of commit eafa450 (before the volatility package).

The reference file and the script that produced it are in ``tests/results/`` (see its docstring).
"""

import importlib.util

import numpy as np
import pytest
from conftest import RESULTS

_spec = importlib.util.spec_from_file_location("fhs_reference", RESULTS / "fhs_reference.py")
fhs_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fhs_reference)


@pytest.fixture(scope="module")
def computed():
    return fhs_reference.compute()


@pytest.fixture(scope="module")
def reference():
    with np.load(RESULTS / "fhs_reference_eafa450.npz") as f:
        return {k: f[k] for k in f.files}


def test_same_keys(computed, reference):
    assert set(computed) == set(reference)


@pytest.mark.parametrize("vol, dist", fhs_reference.SPECS)
def test_margins_and_fits_bit_for_bit(computed, reference, vol, dist):
    keys = [k for k in reference if k.split("/")[1] == f"{vol}-{dist}"]
    assert keys
    for k in keys:
        np.testing.assert_array_equal(computed[k], reference[k], err_msg=k)


@pytest.mark.parametrize("label", [case[0] for case in fhs_reference.EXTRA])
def test_mpor_refit_and_floor_margins_bit_for_bit(computed, reference, label):
    np.testing.assert_array_equal(computed[f"margins/{label}"], reference[f"margins/{label}"])
