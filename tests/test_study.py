"""Study config validation, the CLI, and atomic report writing."""

import datetime as dt
import json
import os

import pandas as pd
import pytest
from marginlab.validation.cli import main
from marginlab.validation.study import load_study, parse_study, run_study

BASE = {
    "study": {"name": "t", "seed": 1, "mpor_days": 1, "tail_prob": 0.01},
    "market": {"assets": ["BTC", "ETH"], "start": "2021-03-01", "end": "2021-09-30"},
    "portfolios": {"reference": ["long BTC spot", "short BTC 25-delta strangle (30d, rolled at 7d)"]},
    "models": [{"name": "static", "params": {"rate": 0.1}}, {"name": "deribit_standard"}],
}


def with_change(section, key, value):
    raw = json.loads(json.dumps(BASE))
    if key is None:
        raw[section] = value
    else:
        raw[section][key] = value
    return raw


@pytest.mark.parametrize("raw, message", [
    (with_change("study", "seed", -1), "study.seed must be a non-negative integer"),
    (with_change("study", "mpor_days", 0), r"study.mpor_days must be an integer in \[1, 60\]"),
    (with_change("study", "tail_prob", 0.7), r"study.tail_prob must be in \(0, 0.5\]"),
    (with_change("study", "colour", "red"), r"unknown key study.colour"),
    (with_change("market", "assets", []), "market.assets must be a non-empty list"),
    (with_change("market", "freq", "5m"), "market.freq must be '1d' or '1h'"),
    (with_change("portfolios", "reference", ["nope"]), r"unknown reference portfolio\(s\) \['nope'\]"),
    (with_change("models", None, [{"name": "magic"}]), r"models\[0\]: unknown model 'magic'"),
    (with_change("models", None, [{"name": "static", "params": {"rate": 2.0}}]), r"models\[0\] \(static\).*rate"),
    (with_change("models", None, [{"name": "static"}, {"name": "static"}]), "duplicate model label"),
    ({**BASE, "extra": {}}, r"unknown section \[extra\]"),
])
def test_bad_config_values_name_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_study(raw, source="test.toml")


def test_default_study_file_is_valid():
    cfg = load_study("studies/default.toml")
    assert cfg.mpor_days == 1 and len(cfg.models) == 13
    assert cfg.stress_scenarios is not None and cfg.reverse_every > 0
    overlaid = cfg.build_models()
    assert {o.name for m in overlaid.values() for o in getattr(m, "overlays", ())} == {"apc_buffer"}


def test_run_study_writes_complete_report_atomically(tmp_path):
    cfg = parse_study(BASE)
    out = tmp_path / "rep"
    res = run_study(cfg, out=out)
    names = sorted(p.name for p in out.iterdir())
    assert names == [".marginlab-report", "backtest.csv", "coverage.csv", "metrics.csv", "procyclicality.csv",
                     "report.html", "results.json", "results.schema.json"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Verdict" in html and "Estimation diagnostics" in html
    data = json.loads((out / "results.json").read_text())
    assert data["study"]["seed"] == 1
    rows = pd.read_csv(out / "backtest.csv")
    assert len(rows) == len(res.backtest.frame)
    # rewriting replaces the folder whole, leaving no temporary folders behind
    run_study(cfg, out=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_report_failure_leaves_previous_report(tmp_path, monkeypatch):
    cfg = parse_study(BASE)
    out = tmp_path / "rep"
    run_study(cfg, out=out)
    before = (out / "results.json").read_text()
    import marginlab.reports.writer as w

    monkeypatch.setattr(w, "render_html", lambda *args: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        run_study(cfg, out=out)
    assert (out / "results.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_cli_datasets_and_bad_study(capsys, tmp_path):
    assert main(["datasets"]) == 0
    assert "prices_1d_btc" in capsys.readouterr().out
    assert main(["datasets", "--raw", str(tmp_path)]) == 2  # listed the catalogue, ignoring the folder (reviewer)
    assert "--raw is for 'datasets build'" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[study]\nseed = -3\n[market]\nassets=['BTC']\n[[models]]\nname='static'\n")
    assert main(["run", str(bad)]) == 2
    assert "study.seed" in capsys.readouterr().err


def test_study_start_is_the_first_margin_date_with_all_history_before_it():
    """A six-month study from 2021-01-01: risk models give margins from its first date (they see the
    history before it) instead of spending 250 days of the range in warm-up."""
    raw = with_change("market", "start", "2021-01-01")
    raw["market"]["end"] = "2021-06-30"
    raw["portfolios"]["reference"] = ["long BTC spot"]
    raw["models"] = [{"name": "historical_var", "params": {"lookback": 500}}]
    res = run_study(parse_study(raw), write=False).backtest
    f = res.to_frame()
    assert f["date"].min() == pd.Timestamp("2021-01-01", tz="UTC")
    assert f["date"].max() == pd.Timestamp("2021-06-30", tz="UTC")
    assert len(f) == 181 and f["margin"].notna().all() and not res.warmup


def test_study_with_overlays_and_stress_reports_apc_cost_and_stress_coverage(tmp_path):
    raw = with_change("models", None, [
        {"name": "historical_var", "label": "hs", "params": {"lookback": 250}},
        {"name": "historical_var", "label": "hs + apc", "params": {"lookback": 250},
         "overlays": [{"name": "apc_buffer", "params": {"buffer": 0.25}}]}])
    raw["stress"] = {"scenarios": ["ftx_2022_11", "down_30_vol_up_50"], "reverse_every": 30}
    out = tmp_path / "rep"
    res = run_study(parse_study(raw), out=out)
    assert ("long BTC spot", "hs + apc") in res.apc.index
    assert set(res.stress.index.get_level_values("scenario")) == {"ftx_2022_11", "down_30_vol_up_50", "worst"}
    assert len(res.cover) and len(res.reverse)
    names = sorted(p.name for p in out.iterdir())
    assert {"apc_tradeoff.csv", "stress_coverage.csv", "cover.csv", "reverse_stress.csv"} <= set(names)
    html = (out / "report.html").read_text()
    assert "Procyclicality and APC tools" in html and "Cover-1 and Cover-2" in html
    data = json.loads((out / "results.json").read_text())
    assert data["study"]["models"][1]["overlays"] == [{"name": "apc_buffer", "params": {"buffer": 0.25}}]


def test_summary_states_the_mpor_in_observations_of_the_panel():
    """An hourly study's MPOR is a number of hours, not days: the summary says observations of 1h."""
    cfg = parse_study({"study": {"name": "hourly", "seed": 1, "mpor_days": 4},
                       "market": {"assets": ["BTC"], "freq": "1h", "start": dt.date(2021, 3, 1),
                                  "end": dt.date(2021, 3, 3)},
                       "portfolios": {"reference": ["long BTC spot"]},
                       "models": [{"name": "static", "params": {"rate": 0.05}}]}, "<test>")
    text = run_study(cfg, write=False).summary()
    assert "MPOR 4 observation(s) of 1h" in text and "4d" not in text


def test_a_multi_worker_run_splits_each_model_groups_books_in_one_group_per_worker(monkeypatch):
    """On two workers each model group's books go in two tasks (so the costliest model is not one task the
    others wait for); the result is the serial one."""
    from marginlab.validation import study as study_module
    from marginlab.validation.executors import SerialExecutor

    seen = []

    class TwoWorkers(SerialExecutor):
        workers = 2

        def map(self, function, items):
            if getattr(function, "__name__", "") == "run_task":  # the backtest's tasks (not the report's figures)
                seen.extend(items)
            return super().map(function, items)

    raw = with_change("market", "start", "2022-01-01")
    raw["market"]["end"] = "2022-01-31"
    raw["portfolios"]["reference"] = ["long BTC spot", "short BTC perpetual", "long BTC / short ETH perpetuals"]
    raw["models"] = [{"name": "static", "params": {"rate": 0.1}}, {"name": "historical_var"}]
    serial = run_study(parse_study(raw), write=False, executor="serial").backtest.frame
    monkeypatch.setattr(study_module, "make_executor", lambda *a, **k: TwoWorkers())
    split = run_study(parse_study(raw), write=False).backtest.frame
    assert sorted((t.models, len(t.books)) for t in seen) == [(("historical_var",), 1), (("historical_var",), 2),
                                                              (("static",), 1), (("static",), 2)]
    pd.testing.assert_frame_equal(serial, split, check_exact=True)


def test_stress_scenarios_all_not_applicable_are_said_in_the_terminal_and_the_report(capsys, tmp_path):
    """Every requested scenario n/a for the books (SOL was not listed in March 2020): no stress coverage, and the
    terminal, the report's stress section and its limitations say so and why (found by a reviewer: silent)."""
    study = tmp_path / "s.toml"
    study.write_text('[study]\nname = "na"\n[market]\nassets = ["BTC", "ETH", "SOL", "XRP"]\nstart = 2022-01-01\n'
                     'end = 2022-01-31\n[portfolios]\nreference = ["equal-weight BTC-ETH-SOL-XRP basket"]\n'
                     '[[models]]\nname = "static"\n[stress]\nscenarios = ["covid_2020_03"]\nevery = 7\n')
    out = tmp_path / "rep"
    assert main(["run", str(study), "--out", str(out), "--executor", "serial"]) == 0
    said = ("none of the requested scenarios (covid_2020_03) gives a stress loss to the study's books, so there is "
            "no stress coverage, Cover-1/2 or stress_coverage.csv: covid_2020_03 is n/a for equal-weight "
            "BTC-ETH-SOL-XRP basket (SOL had no prices in the episode, 2020-03-12 to 2020-03-16).")
    assert said in " ".join(capsys.readouterr().out.split())
    assert not (out / "stress_coverage.csv").exists()
    data = json.loads((out / "results.json").read_text())
    section = next(s["content"] for s in data["sections"] if s["key"] == "stress")
    assert said in section["intro"] and section["tables"] == []
    html = (out / "report.html").read_text()
    assert "Stress coverage is reported in its section" not in html
    assert "No requested stress scenario gave a stress loss for the study" in html
    assert main(["show", str(out)]) == 0  # show reprints it, as run printed it
    assert said in " ".join(capsys.readouterr().out.split())


def test_stress_scenarios_not_applicable_to_some_books_are_listed(tmp_path):
    raw = with_change("portfolios", "reference", ["long BTC spot", "equal-weight BTC-ETH-SOL-XRP basket"])
    raw["market"].update(assets=["BTC", "ETH", "SOL", "XRP"], start="2022-01-01", end="2022-01-31")
    raw["models"] = [{"name": "static", "params": {"rate": 0.1}}]
    raw["stress"] = {"scenarios": ["covid_2020_03", "down_50"], "every": 7}
    res = run_study(parse_study(raw), out=tmp_path / "rep")
    assert res.stress_na[["portfolio", "scenario", "dates", "dates_na"]].values.tolist() == [
        ["equal-weight BTC-ETH-SOL-XRP basket", "covid_2020_03", 5, 5]]
    assert res.stress_text() == ("Stress scenarios not tested: covid_2020_03 is n/a for equal-weight BTC-ETH-SOL-XRP "
                                 "basket (SOL had no prices in the episode, 2020-03-12 to 2020-03-16).")
    assert ("long BTC spot", "static", "covid_2020_03") in res.stress.index
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Stress scenarios not tested: covid_2020_03 is n/a" in html


@pytest.mark.parametrize("start, end, message", [
    ("2022-01-01T12:30:00Z", "2022-02-01", "market.start must be a date (YYYY-MM-DD) for daily data (market.freq = "
                                           "'1d'), got '2022-01-01T12:30:00+00:00'"),
    ("2022-01-01", "2022-02-01T23:00:00-05:00", "market.end must be a date (YYYY-MM-DD) for daily data"),
    ("2022-01-01", "2022-02-01T00:00:00", "market.end must be a date (YYYY-MM-DD) for daily data"),
])
def test_daily_studies_refuse_a_time_of_day_in_start_or_end(tmp_path, capsys, start, end, message):
    """TOML datetimes passed the dt.date check (datetime is a date): 12:30 on 1 January started at 2 January
    and an end at 23:00-05:00 ended at 2 February, without a word (found by a reviewer)."""
    study = tmp_path / "dt.toml"
    study.write_text(f'[market]\nassets = ["BTC"]\nstart = {start}\nend = {end}\n'
                     '[portfolios]\nreference = ["long BTC spot"]\n[[models]]\nname = "static"\n')
    assert main(["run", str(study), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{study}: {message}" in err and not (tmp_path / "out").exists()


def test_hourly_studies_take_a_whole_hour_in_start_and_end():
    def study(start):
        return parse_study({"market": {"assets": ["BTC"], "freq": "1h", "start": start},
                            "portfolios": {"reference": ["long BTC spot"]}, "models": [{"name": "static"}]}, "h.toml")

    assert study(dt.datetime(2021, 1, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=-5)))).start == \
        "2021-01-01T07:00:00-05:00"
    assert study(dt.date(2021, 1, 1)).start == "2021-01-01"
    for bad in (dt.datetime(2021, 1, 1, 12, 30, tzinfo=dt.UTC), "2021-01-01T12:00:00+05:30"):
        with pytest.raises(ValueError, match=r"^h.toml: market.start '2021-01-01T12:[03]0:00\+0[05]:[03]0' is not a "
                                             r"whole hour in UTC \(market.freq = '1h'"):
            study(bad)


def test_study_out_is_relative_to_the_working_directory_with_home_expanded():
    """study.out is the default of --out: relative to the working directory; '~' meant a folder named '~' there
    (accounts.file, an input, is relative to the study file and expanded already; found by a reviewer)."""
    assert parse_study(with_change("study", "out", "~/reports_x")).out == os.path.expanduser("~/reports_x")
    assert parse_study(with_change("study", "out", "reports_x")).out == "reports_x"


def test_a_listed_portfolio_without_its_assets_is_refused_and_all_says_what_it_leaves_out(tmp_path):
    """Found by a reviewer: a listed reference portfolio whose asset is not in market.assets was dropped
    without a word by marginlab run and sweep. Listed by name it is refused (one line naming the file, the book
    and the asset); with "all", the books left out are warned of and named in results.json, the report and the
    sweep."""
    from marginlab.validation.sweep import run_sweep

    raw = with_change("market", "assets", ["BTC"])
    raw["portfolios"]["reference"] = ["long BTC spot", "long BTC / short ETH perpetuals"]
    with pytest.raises(ValueError, match=r"^study_btc.toml: portfolios.reference: portfolio 'long BTC / short ETH "
                                         r"perpetuals' needs ETH, not in market.assets \['BTC'\]$"):
        parse_study(raw, source="study_btc.toml")
    raw["portfolios"]["reference"] = "all"
    raw["market"].update(start="2023-06-01", end="2023-06-10")
    raw["models"] = [{"name": "static", "params": {"rate": 0.1}}]
    cfg = parse_study(raw, source="all.toml")
    books, left_out = cfg.reference_books()
    assert left_out == {"long BTC / short ETH perpetuals": ["ETH"],
                        "equal-weight BTC-ETH-SOL-XRP basket": ["ETH", "SOL", "XRP"],
                        "short ETH 25-delta strangle (30d, rolled at 7d)": ["ETH"],
                        "short BTC / long ETH ATM straddles, each delta-hedged with its perpetual": ["ETH"]}
    assert len(books) == 9 and not set(books) & set(left_out)
    with pytest.warns(UserWarning, match=r"leaves out 4 reference portfolio\(s\).*'long BTC / short ETH perpetuals' "
                                         r"\(needs ETH\)"):
        res = run_study(cfg, out=tmp_path / "rep")
    assert json.loads((tmp_path / "rep" / "results.json").read_text())["study"]["portfolios_left_out"] == left_out
    assert "leaves out 4 reference portfolio(s)" in (tmp_path / "rep" / "report.html").read_text()
    assert set(res.backtest.frame["portfolio"]) <= set(books)
    with pytest.warns(UserWarning, match="leaves out 4"):
        sweep = run_sweep(cfg, _grid(tmp_path), write=False)
    assert "leaves out 4 reference portfolio(s)" in sweep.summary()


def _grid(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('[[models]]\nname = "static"\nparams = { rate = [0.1, 0.2] }\n')
    return path


def test_hourly_reports_write_every_time_to_the_hour(tmp_path):
    """An hourly study names its breach times, sample bounds and account dates to the hour, as backtest.csv and
    accounts.csv do (they were cut to the day: a breach at 11:00 read as the whole day), and counts account rows
    as observations."""
    (tmp_path / "pos.csv").write_text("date,account,instrument,asset,quantity,expiry,strike,kind\n"
                                      "2021-04-10 00:00,H1,spot,BTC,2,,,\n")
    cfg = parse_study({"study": {"name": "hourly", "seed": 1, "mpor_days": 1},
                       "market": {"assets": ["BTC"], "freq": "1h", "start": dt.date(2021, 4, 12),
                                  "end": dt.date(2021, 4, 19)},
                       "portfolios": {"reference": ["long BTC spot"]},
                       "accounts": {"file": str(tmp_path / "pos.csv")},
                       "models": [{"name": "static", "params": {"rate": 0.005}}]}, "<test>")
    out = tmp_path / "rep"
    run_study(cfg, out=out)
    rows = pd.read_csv(out / "backtest.csv")
    book = rows[rows["portfolio"] == "long BTC spot"]
    worst = book.loc[(book["loss"] - book["margin"])[book["breach"]].idxmax(), "date"]
    assert worst[11:16] != "00:00"  # the test needs a breach away from midnight
    data = json.loads((out / "results.json").read_text())
    verdict = data["sections"][0]["content"]["matrix"]
    cell = verdict["cells"][0]
    assert worst.startswith(cell["largest_shortfall_date"]) and len(cell["largest_shortfall_date"]) == 16
    assert f"on the margin called on {cell['largest_shortfall_date']} (" in verdict["sentences"][2]
    assert verdict["common_sample"][0]["first"] == "2021-04-12 00:00"
    assert verdict["common_sample"][0]["last"] == "2021-04-19 00:00"
    html = (out / "report.html").read_text()
    assert "margin dates 2021-04-12 00:00 .. 2021-04-19 00:00" in html
    accounts = next(s for s in data["sections"] if s["key"] == "accounts")["content"]
    assert "pooled over account-observations" in accounts["intro"]
    summary = accounts["tables"][0]["table"]
    text = json.dumps(summary)
    assert "account_observations" in text and "account_days" not in text
    h1 = rows[rows["portfolio"] == "H1"]
    h1_worst = h1.loc[(h1["loss"] - h1["margin"])[h1["breach"]].idxmax(), "date"]
    assert h1_worst[:16] in text


def test_hourly_mpor_24_pass_is_shown_as_low_power_in_every_view(tmp_path):
    """Hourly, MPOR 24 observations on a week: every sub-sample holds ~7 rows, so no pass carries evidence; the
    first sentence, the HTML cell and the terminal cell say 'low power' and results.json carries the reach."""
    cfg = parse_study({"study": {"name": "hourly", "seed": 1, "mpor_days": 24},
                       "market": {"assets": ["BTC"], "freq": "1h", "start": dt.date(2021, 4, 12),
                                  "end": dt.date(2021, 4, 19)},
                       "portfolios": {"reference": ["long BTC spot"]},
                       "models": [{"name": "static", "params": {"rate": 0.10}}]}, "<test>")
    out = tmp_path / "rep"
    res = run_study(cfg, out=out)
    cell = json.loads((out / "results.json").read_text())["sections"][0]["content"]["matrix"]["cells"][0]
    assert cell["verdict"] == "pass" and cell["low_power"] and cell["subsamples"] == 24
    assert "not rejected (low power: n/h = " in res.verdict()["sentences"][0]
    assert '<span class="vl">pass (low power)</span>' in (out / "report.html").read_text()
    from marginlab.reports.verdict import verdict_text

    assert "pass (low power)" in verdict_text(res.verdict())  # the terminal's matrix (marginlab run / show)


def test_readme_study_example_parses():
    """The README's annotated study (section "Study config (TOML)") is a valid study as written: its
    [execution] example once paired executor = "auto" with a scheduler, which parse_study refuses."""
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text.split("## Study config (TOML)", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    config = parse_study(tomllib.loads(block), source=str(root / "studies" / "readme_example.toml"))
    assert config.executor == "auto" and config.scheduler is None and config.books_per_task == 25
    assert Path(config.accounts_file).name == "accounts_sample.csv.gz"
