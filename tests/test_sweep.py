"""Parameter sweeps: grid parsing, the table equals separate runs of its points, any executor, the CLI."""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from marginlab.validation.cli import main
from marginlab.validation.study import parse_study
from marginlab.validation.sweep import parse_grid, run_sweep, sweep_point

STUDY = parse_study({
    "study": {"name": "sweep test", "seed": 7},
    "market": {"assets": ["BTC", "ETH"], "start": "2021-06-01", "end": "2021-08-31"},
    "portfolios": {"reference": ["long BTC spot", "long BTC / short ETH perpetuals"]},
    "models": [{"name": "static"}]})
GRID = {"models": [
    {"name": "historical_var", "params": {"lookback": [250, 500]},
     "overlays": [{"name": "apc_buffer", "params": {"buffer": [0.25, 0.5]}}]},
    {"name": "static", "label": "flat", "params": {"rate": [0.05, 0.1]}},
]}


class ReversedExecutor:
    """Runs the items last to first (as a pool might finish them) and returns the results in order."""

    def map(self, function, items):
        return [function(x) for x in reversed(items)][::-1]


def test_grid_is_the_cartesian_product_within_each_entry():
    points = parse_grid(GRID)
    assert len(points) == 6
    assert [p.swept for p in points[:4]] == [{"lookback": 250, "apc_buffer.buffer": 0.25},
                                             {"lookback": 250, "apc_buffer.buffer": 0.5},
                                             {"lookback": 500, "apc_buffer.buffer": 0.25},
                                             {"lookback": 500, "apc_buffer.buffer": 0.5}]
    assert points[1].params == {"lookback": 250} and points[1].overlays == (("apc_buffer", {"buffer": 0.5}),)
    assert points[4].label == "flat [rate=0.05]" and points[4].entry == 1 and points[4].model == "flat"
    twice = parse_grid({"models": [{"name": "static", "params": {"rate": [0.1, 0.2]}},
                                   {"name": "static", "params": {"rate": [0.3]}}]})
    assert [p.model for p in twice] == ["static", "static", "static (1)"]
    single = parse_grid({"models": [{"name": "static", "params": {"rate": 0.2}}]})
    assert len(single) == 1 and single[0].swept == {} and single[0].label == "static"


@pytest.mark.parametrize("grid, message", [
    ({"models": [{"name": "nope"}]}, r"models\[0\]: unknown model 'nope'"),
    ({"models": [{"name": "static", "params": {"rate": [0.1, 2.0]}}]}, r"models\[0\] \(static\) at \{'rate': 2.0\}"),
    ({"models": [{"name": "static", "params": {"rate": []}}]}, "rate is an empty list"),
    ({"models": [], "study": {}}, r"unknown section\(s\) \['study'\]"),
    ({"models": [{"name": "static", "colour": 1}]}, r"unknown key models\[0\].colour"),
    ({"models": [{"name": "static", "label": "x (2)"}, {"name": "static", "label": "x"}, {"name": "static",
                                                                                      "label": "x"}]},
     "appears twice"),
])
def test_bad_grids_name_the_fault(grid, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(grid, source="grid.toml")


def test_sweep_table_equals_separate_runs_on_any_executor():
    points = parse_grid(GRID)
    serial = run_sweep(STUDY, points, write=False)
    reversed_ = run_sweep(STUDY, points, write=False, executor=ReversedExecutor())
    pd.testing.assert_frame_equal(serial.table, reversed_.table, check_exact=True)
    from marginlab.datasets import load_market
    from marginlab.models import reference_portfolios

    market = load_market(["BTC", "ETH"])
    books = {n: reference_portfolios()[n] for n in STUDY.portfolios}
    for k in (0, 3, 5):  # a point run on its own gives the same rows
        alone = sweep_point(points[k], STUDY, market, books)
        mine = serial.table[serial.table["grid_point"] == points[k].label]
        mine = mine.dropna(axis=1, how="all").reset_index(drop=True)
        alone = alone.dropna(axis=1, how="all").reset_index(drop=True)[mine.columns]
        pd.testing.assert_frame_equal(mine, alone, check_exact=True, check_dtype=False)
    t = serial.table
    assert len(t) == 6 * 2 and {"breach_rate", "kupiec_pvalue", "mean_margin", "max_5d_increase",
                                "param:lookback", "param:apc_buffer.buffer"} <= set(t.columns)
    flat = t[t["grid_point"] == "flat [rate=0.1]"]
    assert set(t["model"]) == {"historical_var", "flat"}
    assert (flat["mean_margin_rate"] - 0.1).abs().max() < 1e-12
    bigger = t[t["grid_point"].str.contains("buffer=0.5")]["mean_margin"].to_numpy()
    smaller = t[t["grid_point"].str.contains("buffer=0.25")]["mean_margin"].to_numpy()
    assert (bigger > smaller).all()


def test_sweep_cli_writes_a_folder_and_refuses_foreign_ones(tmp_path):
    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "s"\n[market]\nassets = ["BTC"]\nstart = 2021-06-01\nend = 2021-06-30\n'
                     '[portfolios]\nreference = ["long BTC spot"]\n[[models]]\nname = "static"\n')
    grid = tmp_path / "grid.toml"
    grid.write_text('[[models]]\nname = "static"\nparams = { rate = [0.05, 0.1, 0.2] }\n')
    out = tmp_path / "sweep"
    assert main(["sweep", str(study), "--grid", str(grid), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".marginlab-sweep", "sweep.csv", "sweep.html", "sweep.json"]
    table = pd.read_csv(out / "sweep.csv")
    assert list(table["param:rate"]) == [0.05, 0.1, 0.2]
    assert "data:image/png;base64," in (out / "sweep.html").read_text()
    assert main(["sweep", str(study), "--grid", str(grid), "--out", str(out)]) == 0  # a previous sweep: replaced
    (out / "notes.txt").write_text("mine")
    assert main(["sweep", str(study), "--grid", str(grid), "--out", str(out)]) == 2
    assert (out / "notes.txt").read_text() == "mine"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[models]]\nname = "static"\nparams = { rate = [true] }\n')
    assert main(["sweep", str(study), "--grid", str(bad), "--out", str(tmp_path / "x")]) == 2


def test_a_sweep_names_the_study_key_of_a_range_outside_the_data(tmp_path):
    """Like run: 'Backtest: start 2010-01-01 is outside the market data' named neither file nor key (reviewer)."""
    study = parse_study({"study": {"name": "s", "seed": 1},
                         "market": {"assets": ["BTC"], "start": "2010-01-01", "end": "2021-01-31"},
                         "portfolios": {"reference": ["long BTC spot"]}, "models": [{"name": "static"}]}, "s.toml")
    with pytest.raises(ValueError, match=r"^s.toml: market.start 2010-01-01 is outside the data of \['BTC'\]"):
        run_sweep(study, parse_grid(GRID), write=False)


def test_a_grid_point_applying_to_no_book_is_refused_before_anything_is_written(tmp_path, capsys):
    """tiered on long BTC spot gave KeyError 'grid_point' and left a 1-byte sweep.csv (found by a reviewer)."""
    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "s"\n[market]\nassets = ["BTC"]\nstart = 2022-01-01\nend = 2022-01-31\n'
                     '[portfolios]\nreference = ["long BTC spot"]\n[[models]]\nname = "static"\n')
    grid = tmp_path / "grid.toml"
    grid.write_text('[[models]]\nname = "tiered"\nparams = { level = ["maintenance", "initial"] }\n'
                    '[[models]]\nname = "static"\n')
    out = tmp_path / "sweep"
    assert main(["sweep", str(study), "--grid", str(grid), "--out", str(out), "--executor", "serial"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (f"{study}: grid point(s) \"tiered [level='maintenance']\" (model 'tiered'), \"tiered [level='initial']\" "
            "(model 'tiered') apply to none of the study's books (long BTC spot)") in err
    assert not out.exists()


def test_books_a_grid_point_does_not_apply_to_are_named_in_the_summary():
    result = run_sweep(STUDY, parse_grid({"models": [{"name": "tiered"}, {"name": "static"}]}), write=False)
    t = result.table
    assert list(t.loc[t["grid_point"] == "tiered", "portfolio"]) == ["long BTC / short ETH perpetuals"]
    assert len(t[t["grid_point"] == "static"]) == 2
    assert result.not_applicable == [("tiered", "long BTC spot")]
    assert result.summary().endswith("\ntiered does not apply to (no rows): long BTC spot")
    # numbers as the report writes them (found by a reviewer: "2.22e-16"): rates in %, p-values, no exponent
    table = result.summary().split("medians over books:\n")[1].split("\n\n")[0]
    assert not re.search(r"\d\.\d+e[+-]\d", table) and "%" in table  # "< 1e-10" is the report's p-value text


@pytest.mark.parametrize("portfolios", ["", '[portfolios]\nreference = ["long BTC spot"]\n'])
def test_a_study_with_accounts_is_refused_not_swept_without_them(tmp_path, capsys, portfolios):
    """[accounts] alone gave 'no portfolio can be built from market.assets'; beside [portfolios] the accounts
    were dropped without a word (found by a reviewer)."""
    (tmp_path / "positions.csv").write_text("date,account,instrument,asset,quantity\n2022-01-03,A1,spot,BTC,1\n")
    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "s"\n[market]\nassets = ["BTC"]\nstart = 2022-01-01\nend = 2022-01-31\n'
                     f'{portfolios}[accounts]\nfile = "positions.csv"\n[[models]]\nname = "static"\n')
    grid = tmp_path / "grid.toml"
    grid.write_text('[[models]]\nname = "static"\nparams = { rate = [0.05, 0.1] }\n')
    out = tmp_path / "sweep"
    assert main(["sweep", str(study), "--grid", str(grid), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not out.exists()
    assert f"{study}: [accounts]: a sweep runs the study's reference portfolios only, not member accounts" in err


def test_settings_a_sweep_does_not_use_are_one_warning_line(tmp_path):
    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "s"\nstandalone_legs = true\n[market]\nassets = ["BTC"]\nstart = 2021-06-01\n'
                     'end = 2021-06-30\n[portfolios]\nreference = ["long BTC spot"]\n[stress]\nscenarios = "all"\n'
                     '[[models]]\nname = "static"\n')
    grid = tmp_path / "grid.toml"
    grid.write_text('[[models]]\nname = "static"\nparams = { rate = [0.05, 0.1] }\n')
    # in a process of its own: as a user sees it (pytest records the warnings of the tests' own process)
    done = subprocess.run([sys.executable, "-m", "marginlab.validation.cli", "sweep", str(study), "--grid", str(grid),
                           "--out", str(tmp_path / "sweep"), "--executor", "serial"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": ""})
    assert done.returncode == 0
    assert done.stderr == (f"marginlab: warning: {study}: a sweep does not use study.standalone_legs, [stress]: its "
                           "table has coverage, margin and procyclicality only\n")
    quiet = parse_study({"market": {"assets": ["BTC"], "start": "2021-06-01", "end": "2021-06-30"},
                         "portfolios": {"reference": ["long BTC spot"]}, "models": [{"name": "static"}]})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_sweep(quiet, parse_grid({"models": [{"name": "static"}]}), write=False)
