import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = Path(__file__).parent / "results"
RAW = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "raw"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES

# studies run serially in the tests (a local Dask cluster per test would cost seconds each); the executor
# tests choose their executors explicitly
os.environ.setdefault("MARGINLAB_EXECUTOR", "serial")
