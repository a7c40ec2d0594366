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


def _written(tmp_path, name, frame):
    file = tmp_path / f"{name}.csv"
    frame.to_csv(file, index=False)
    return file


def test_dates_resaved_as_plain_dates_match_the_original(tmp_path, capsys):
    """A backtest.csv re-saved with YYYY-MM-DD dates is the same run (dates compared as UTC times, not text)."""
    before = _written(tmp_path, "before", _frame())
    after = _written(tmp_path, "after", _frame().assign(date=_frame()["date"].dt.strftime("%Y-%m-%d")))
    assert main(["diff", str(before), str(after)]) == 0
    assert capsys.readouterr().out.startswith("identical")
    read = read_backtest(after)
    assert str(read["date"].dtype) == "datetime64[ns, UTC]" and read["breach"].dtype == bool
    assert np.isnan(read["var"]).all() and read["margin"].tolist() == _frame()["margin"].tolist()


@pytest.mark.parametrize(("column", "value", "message"), [
    ("breach", "maybe", "column 'breach': 'maybe' is not True or False"),
    ("breach", "1", "column 'breach': '1' is not True or False"),
    ("margin", "x", "column 'margin': 'x' is not a finite number"),
    ("margin", "", "column 'margin': missing value"),
    ("pnl", "inf", "column 'pnl': 'inf' is not a finite number"),
    ("date", "01/03/2022", "column 'date': '01/03/2022' is not an ISO 8601 date"),
    ("date", "2022-1-3", "column 'date': '2022-1-3' is not an ISO 8601 date"),
])
def test_a_bad_cell_is_one_line_naming_file_row_and_column(tmp_path, capsys, column, value, message):
    """Never coerced: a breach of 'maybe' used to count as a flipped flag, a margin of 'x' gave a traceback."""
    bad = _frame().astype({column: object})
    bad.loc[2, column] = value
    before = _written(tmp_path, "before", _frame())
    after = _written(tmp_path, "after", bad)
    assert main(["diff", str(before), str(after)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{after}: data row 3 (" in err and "model 'static'" in err and message in err


def test_the_same_key_twice_is_named(tmp_path):
    f = _frame()
    f.loc[1, "date"] = f.loc[0, "date"]
    file = tmp_path / "dup.csv"
    f.assign(date=f["date"].dt.strftime("%Y-%m-%d")).to_csv(file, index=False)
    with pytest.raises(ValueError, match=r"dup.csv: data rows 1 and 2 have the same \(date, portfolio, model\)"):
        read_backtest(file)


def test_frames_with_untyped_columns_are_refused():
    f = _frame()
    with pytest.raises(ValueError, match=r"second backtest: column 'breach' holds \w+, not booleans"):
        compare_backtests(f, f.astype({"breach": str}))
    with pytest.raises(ValueError, match=r"first backtest: column 'date' holds \w+, not timestamps"):
        compare_backtests(f.assign(date=f["date"].astype(str)), f)
    naive = f.assign(date=f["date"].dt.tz_localize(None))
    assert compare_backtests(naive, f).identical


@pytest.mark.parametrize("column", ["pnl", "var"])
def test_a_value_column_in_one_file_only_is_refused_naming_the_file(tmp_path, capsys, column):
    """A file without 'pnl' was reported 'identical: every row and value bit for bit the same' (found by a reviewer):
    its values cannot be compared."""
    before = _written(tmp_path, "before", _frame())
    after = _written(tmp_path, "after", _frame().drop(columns=column))
    assert main(["diff", str(before), str(after)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "identical" not in err
    assert f"{after}: no column {column!r}, which {before} has" in err
    with pytest.raises(ValueError, match=rf"the first backtest: no column '{column}', which the second backtest has"):
        compare_backtests(_frame().drop(columns=column), _frame())


def test_every_column_is_compared_notional_loss_and_roll_flags_included(tmp_path, capsys):
    """Found by a reviewer: a copy of a run's backtest.csv with every notional doubled and every book_changed
    set was reported "identical: every row and value bit for bit the same" (notional, loss and book_changed
    were not compared; the margin rate and procyclicality read them). A margin that moves from 0 has an
    infinite relative move, not none."""
    before = _frame().assign(notional=1e6, book_changed=False)
    after = before.assign(notional=2e6, book_changed=True)
    after.loc[after.index[0], "loss"] += 1.0
    diff = compare_backtests(before, after)
    t = diff.to_frame()
    assert not diff.identical and not diff.summary().startswith("identical")
    assert (t["notional_moved"] == 4).all() and (t["book_changed_flipped"] == 4).all()
    assert t["loss_moved"].tolist() == [1, 0] and (t["margin_moved"] == 0).all()
    assert "other values changed: loss 1, notional 8, book_changed 8" in diff.summary()
    before_csv, after_csv = _written(tmp_path, "before", before), _written(tmp_path, "after", after)
    main(["diff", str(before_csv), str(after_csv)])
    assert "identical" not in capsys.readouterr().out
    zero = before.assign(margin=0.0)
    t = compare_backtests(zero, before).to_frame()
    assert (t["margin_moved"] == 4).all() and np.isinf(t["margin_rel_max"]).all()


def test_the_sign_of_a_zero_is_a_move(tmp_path, capsys):
    """diff said "identical: every row and value bit for bit the same" for runs whose loss differed by the sign of
    zero (-0.0 before, 0.0 after; found by a reviewer): values are now compared bit for bit, in frames and files."""
    before = _frame().assign(loss=-0.0)
    after = before.assign(loss=0.0)
    assert (before["loss"] == after["loss"]).all()  # == cannot see it
    diff = compare_backtests(before, after)
    assert not diff.identical and int(diff.to_frame()["loss_moved"].sum()) == 8
    assert diff.to_frame()["margin_moved"].sum() == 0 and "other values changed: loss 8" in diff.summary()
    before.to_csv(tmp_path / "a.csv", index=False)
    after.to_csv(tmp_path / "b.csv", index=False)
    assert "-0.0" in (tmp_path / "a.csv").read_text()
    main(["diff", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    assert "identical" not in capsys.readouterr().out
    assert compare_backtests(before, before.copy()).identical  # NaNs (var, es, pit) still equal
