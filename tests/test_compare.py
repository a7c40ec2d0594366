"""marginlab diff: which margins moved between two runs, by how much, and which breaches flipped."""

import numpy as np
import pandas as pd
import pytest
from marginlab.validation.cli import main
from marginlab.validation.compare import compare_backtests, read_backtest


def _frame():
    dates = pd.date_range("2022-01-01", periods=4, tz="UTC")
    rows = []
    for model, base in (("static", 100.0), ("fhs", 50.0)):
        for k, d in enumerate(dates):
            rows.append({"date": d, "portfolio": "book", "model": model, "margin": base + k, "pnl": -40.0 - k,
                         "loss": 40.0 + k, "breach": False, "var": np.nan, "es": np.nan, "pit": np.nan})
    return pd.DataFrame(rows)


def test_identical_runs_are_reported_identical():
    f = _frame()
    diff = compare_backtests(f, f.copy())
    assert diff.identical and diff.moved.empty and diff.summary().startswith("identical")


def test_moves_flips_and_missing_rows_are_counted_exactly():
    before = _frame()
    after = before.copy()
    after.loc[(after["model"] == "fhs") & (after.index % 4 == 1), "margin"] *= 1 + 1e-6   # one margin, 1e-6
    after.loc[(after["model"] == "fhs") & (after.index % 4 == 2), "margin"] = 30.0        # 52 -> 30: a breach
    after.loc[(after["model"] == "fhs") & (after.index % 4 == 2), "breach"] = True
    after = after.drop(index=after.index[(after["model"] == "static")][-1:])               # one row fewer
    diff = compare_backtests(before, after)
    t = diff.to_frame()
    assert not diff.identical
    assert t.loc["fhs", "margin_moved"] == 2 and t.loc["fhs", "breaches_flipped"] == 1
    assert t.loc["fhs", "margin_rel_max"] == pytest.approx(22 / 52)
    assert t.loc["fhs", "margin_rel_median"] == pytest.approx((22 / 52 + 1e-6) / 2)
    assert t.loc["static", "margin_moved"] == 0 and t.loc["static", "only_before"] == 1
    assert t.loc["static", "only_after"] == 0 and len(diff.moved) == 2


def test_cli_diff_reads_report_folders_and_names_a_bad_path(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        _frame().to_csv(tmp_path / name / "backtest.csv", index=False)
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "b" / "backtest.csv")]) == 0
    assert "identical" in capsys.readouterr().out
    assert read_backtest(tmp_path / "a")["margin"].tolist() == _frame()["margin"].tolist()
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "backtest.csv" in err and "Traceback" not in err
