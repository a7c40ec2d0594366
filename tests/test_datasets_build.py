"""Each build rule against a small fixture file holding exactly that defect."""

import gzip
import hashlib

import pandas as pd
import pytest
from conftest import FIXTURES, RAW
from marginlab.datasets import DataError
from marginlab.datasets import build as b


def clean(name, daily=True):
    log = b.BuildLog()
    frame = b.clean_cdd(FIXTURES / name, log, daily=daily)
    return frame, {e["rule"]: e for e in log.entries}


def test_newest_first_rows_are_sorted_and_banner_skipped():
    frame, log = clean("cdd_newest_first.csv")
    assert list(frame["close"]) == [101, 102, 105]
    assert frame["time"].iloc[0] == pd.Timestamp("2018-01-01", tz="UTC")
    assert log["sort"]["action"] == "repaired"


def test_header_found_without_banner_and_seconds_converted():
    frame, log = clean("cdd_no_banner_seconds.csv")
    assert list(frame["time"]) == list(pd.to_datetime(["2018-01-01", "2018-01-02"], utc=True))
    assert "unix_units" not in log  # all seconds: nothing mixed


def test_stitched_hours_keep_millisecond_rows():
    frame, log = clean("cdd_stitched_hours.csv", daily=False)
    assert len(frame) == 4
    two_am = frame.set_index("time").loc[pd.Timestamp("2018-01-01 02:00", tz="UTC")]
    assert two_am["open"] == pytest.approx(102.00000001, abs=0)
    assert log["unix_units"]["count"] == 3
    assert log["stitched_duplicates"]["count"] == 1


def test_bogus_first_row_dropped():
    frame, log = clean("cdd_bogus_first_row.csv", daily=False)
    assert frame["time"].iloc[0] == pd.Timestamp("2018-01-01 01:00", tz="UTC")
    assert log["bogus_first_row"]["count"] == 1


def test_swapped_volume_repaired():
    frame, log = clean("cdd_swapped_volume.csv")
    assert frame["volume_base"].tolist() == [10, 10]
    assert frame["volume_quote"].tolist() == [1010, 1020]
    assert log["swapped_volume"]["count"] == 1


def test_partial_last_day_dropped():
    frame, log = clean("cdd_partial_last_day.csv")
    assert len(frame) == 31
    assert log["partial_last_period"]["count"] == 1


def test_missing_day_truncates_record():
    frame, log = clean("cdd_missing_day.csv")
    assert frame["time"].iloc[-1] == pd.Timestamp("2018-01-06", tz="UTC")
    assert log["truncate_at_gap"]["count"] == 3
    assert "2018-01-07" in log["truncate_at_gap"]["detail"]


def test_stale_days_kept_and_listed():
    frame, log = clean("cdd_stale_days.csv")
    assert len(frame) == 4
    assert log["stale_prices"]["count"] == 2
    assert "2018-01-02, 2018-01-03" in log["stale_prices"]["detail"]


def test_non_positive_price_is_an_error_naming_file_column_date():
    with pytest.raises(DataError, match=r"cdd_non_positive.csv.*'close'.*2018-01-02"):
        clean("cdd_non_positive.csv")


def test_write_csv_gz_is_deterministic(tmp_path):
    frame = pd.DataFrame({"a": [1.5, 2.25], "b": ["x", "y"]})
    h1 = b.write_csv_gz(frame, tmp_path / "one.csv.gz")
    h2 = b.write_csv_gz(frame, tmp_path / "two.csv.gz")
    assert h1 == h2 == hashlib.sha256((tmp_path / "one.csv.gz").read_bytes()).hexdigest()
    assert gzip.decompress((tmp_path / "one.csv.gz").read_bytes()).decode() == "a,b\n1.5,x\n2.25,y\n"


@pytest.mark.skipif(not RAW.is_dir(), reason="raw data folder ../shared/datasets/raw not present")
def test_build_reproduces_bundled_files(tmp_path):
    """Building from the raw files gives byte-identical files to those shipped."""
    b.build(RAW, tmp_path)
    shipped = (b.DATA_DIR / "MANIFEST.sha256").read_text()
    rebuilt = (tmp_path / "MANIFEST.sha256").read_text()
    assert rebuilt == shipped


def test_manifest_matches_shipped_files():
    for line in (b.DATA_DIR / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((b.DATA_DIR / name).read_bytes()).hexdigest() == digest, name
