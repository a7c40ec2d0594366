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

#: Names a user could give (study, books, models, file names) that HTML or matplotlib would misread.
HOSTILE_BOOK = 'long BTC <script>alert("book")</script> & \'quoted\' $\\alpha$'
HOSTILE_MODEL = 'static <b>10%</b> & "rule" <img src=x onerror=alert(1)>'
HOSTILE_STUDY = "report <i>test</i> & co"


@pytest.fixture(scope="session")
def hostile_report(tmp_path_factory):
    """A small study whose study name, description, model label, book name and file name carry HTML, written
    as a report: {"study": StudyResult, "out": folder, "study_file": path, "book": name, "model": label}."""
    from marginlab.datasets import load_market
    from marginlab.models import reference_portfolios
    from marginlab.reports import write_report
    from marginlab.validation import Backtest
    from marginlab.validation.study import StudyResult, load_study

    root = tmp_path_factory.mktemp("report")
    study_file = root / "st<u>dy & 'x'.toml"
    study_file.write_text(
        f'[study]\nname = {json_str(HOSTILE_STUDY)}\ndescription = "<b>bold?</b> no: text & more"\nseed = 4\n'
        'mpor_days = 1\ntail_prob = 0.01\n[market]\nassets = ["BTC", "ETH"]\nstart = 2022-01-01\nend = 2022-12-31\n'
        '[portfolios]\nreference = ["long BTC spot", "long BTC / short ETH perpetuals"]\n'
        f'[[models]]\nname = "static"\nlabel = {json_str(HOSTILE_MODEL)}\nparams = {{ rate = 0.10 }}\n'
        '[[models]]\nname = "tiered"\nlabel = "Binance tiers"\n'
        '[[models]]\nname = "historical_var"\nlabel = "HS VaR 99%"\nparams = { lookback = 250 }\n'
        '[[models]]\nname = "fhs_garch"\nlabel = "FHS ES 97.5%"\nparams = { measure = "es", lookback = 300 }\n')
    cfg = load_study(study_file)
    market = load_market(list(cfg.assets))
    library = reference_portfolios()
    # the book names come from the user here (a dict of portfolios), as account names will
    books = {HOSTILE_BOOK: library["long BTC spot"],
             "long BTC / short ETH perpetuals": library["long BTC / short ETH perpetuals"]}
    from marginlab.models import make_model

    models = {label: make_model(name, **params) for label, name, params in cfg.models}
    bt = Backtest(market, books, models, start=cfg.start, end=cfg.end, seed=cfg.seed).run()
    reports = {k: bt.coverage_report(*k, default_p=cfg.tail_prob)
               for k in bt.frame.groupby(["portfolio", "model"], sort=False).groups}
    study = StudyResult(config=cfg, backtest=bt, coverage=bt.coverage(default_p=cfg.tail_prob, reports=reports),
                        metrics=bt.efficiency(), reports=reports,
                        files={"started": "2026-01-01 00:00:00 UTC", "elapsed_s": 1.5, "out": "rep"})
    out = root / "rep"
    study.report_path = write_report(study, out)
    return {"study": study, "out": out, "study_file": study_file, "book": HOSTILE_BOOK, "model": HOSTILE_MODEL,
            "name": HOSTILE_STUDY}


def json_str(text: str) -> str:
    """A TOML basic string (JSON string syntax is valid TOML for these characters)."""
    import json

    return json.dumps(text)
