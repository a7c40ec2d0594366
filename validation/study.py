"""Study configuration (TOML) and runner.

A study names the market data, the portfolios, the margin models and the
validation settings; ``run_study`` replays it and writes the report. Every key
is checked: an unknown key or a bad value raises ``ValueError`` naming it.

Example (``studies/default.toml``)::

    [study]
    name = "default"
    seed = 20261122          # randomness (FHS bootstrap) is drawn from this seed only
    mpor_days = 1
    tail_prob = 0.01         # p of the coverage tests (99% coverage)
    out = "reports_out"      # the report folder: like --out, relative to the working directory
    standalone_legs = true   # also margin each leg alone: the offset benefit metric

    [market]
    assets = ["BTC", "ETH", "SOL", "XRP"]
    freq = "1d"              # optional start / end: first and last margin dates (UTC); models see
                             # all the bundled history before start. Dates on daily data; on hourly
                             # data ("1h") a date or a whole hour (2021-01-01T08:00:00Z)
    smile = true             # BTC option vols: DVOL x smile fitted from the bundled chains

    [portfolios]
    reference = "all"        # or a list of reference-portfolio names
    notional = 1000000

    [[models]]
    name = "static"
    params = { rate = 0.10 }

Member accounts (beside or instead of ``[portfolios]``) and where the run executes::

    [accounts]
    file = "accounts_sample.csv.gz"   # relative to the study file; see marginlab.datasets.read_positions
    carry_forward = true

    [execution]
    executor = "auto"        # "serial", "local" (Dask on this machine) or "remote" (with scheduler)
    workers = 2              # local cluster size (default: the free cores)
    scheduler = "tcp://host:8786"
    books_per_task = 25
    [[models]]                # a model with anti-procyclicality overlays, applied in order (first innermost)
    name = "historical_var"
    label = "Historical VaR + APC buffer"
    overlays = [{ name = "apc_buffer", params = { buffer = 0.25 } }]

    [stress]                  # optional: stress tests of every book and model
    scenarios = "all"         # or a list of names of marginlab.validation.stress.SCENARIOS
    every = 1                 # stress every k-th date of the run's margin-date calendar (all books)
    reverse_every = 7         # reverse stress every k-th date of that calendar (0: none)
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import tomllib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from marginlab.datasets import load_market, read_positions
from marginlab.datasets.conventions import utc
from marginlab.models import MODELS, MarginModel, account_books, make_model, make_overlay, reference_portfolios
from marginlab.models.params import Asset, check_value, validate_fields

from .engine import Backtest, BacktestResult
from .executors import make_executor
from .progress import Progress

__all__ = ["StudyConfig", "StudyResult", "load_study", "parse_study", "run_study", "build_model", "read_toml",
           "DEFAULT_STUDY", "STUDY_KEYS", "MODEL_KEYS", "OVERLAY_KEYS"]

#: ``marginlab run`` without a file runs ``studies/default.toml`` of the working directory,
#: or of the source checkout for an editable install.
DEFAULT_STUDY = Path("studies") / "default.toml"


def _default_study() -> Path:
    for candidate in (Path.cwd() / DEFAULT_STUDY, Path(__file__).resolve().parents[1] / DEFAULT_STUDY):
        if candidate.exists():
            return candidate
    raise ValueError(f"no study file given and {DEFAULT_STUDY} not found in {Path.cwd()}; "
                     "pass the path of a study TOML file")

#: Every key of a study file, per section, and its type: the one declaration that the parser checks
#: (``marginlab.models.params.check_value``: no coercion, ``bool`` is not a number). ``[[models]]``
#: entries have the keys of :data:`MODEL_KEYS`; their ``params`` are checked by the model itself, and each
#: entry of their ``overlays`` has the keys of :data:`OVERLAY_KEYS` (``params`` checked by the overlay).
STUDY_KEYS: dict[str, dict[str, Any]] = {
    "study": {"name": str, "seed": int, "mpor_days": int, "tail_prob": float, "out": str,
              "include_funding": bool, "description": str, "standalone_legs": bool},
    "market": {"assets": list[Asset], "freq": str, "start": dt.date, "end": dt.date, "smile": bool},
    "portfolios": {"reference": str | list[str], "notional": float},
    "accounts": {"file": str, "carry_forward": bool},
    "execution": {"executor": str, "workers": int, "scheduler": str, "books_per_task": int},
    "stress": {"scenarios": str | list[str], "every": int, "reverse_every": int},
}
MODEL_KEYS: dict[str, Any] = {"name": str, "label": str, "params": dict[str, Any], "overlays": list[dict[str, Any]]}
OVERLAY_KEYS: dict[str, Any] = {"name": str, "params": dict[str, Any]}


def build_model(name: str, params: dict[str, Any] | None = None,
                overlays: tuple[tuple[str, dict[str, Any]], ...] = ()) -> MarginModel:
    """A registered model with its overlays applied in order, the first innermost (make_model, make_overlay)."""
    model = make_model(name, **(params or {}))
    for overlay, overlay_params in overlays:
        model = make_overlay(overlay, **overlay_params)(model)
    return model


@dataclass(frozen=True)
class StudyConfig:
    """A validated study configuration (field types checked on construction)."""

    name: str
    seed: int
    mpor_days: int
    tail_prob: float
    assets: tuple[str, ...]
    freq: str = "1d"
    start: str | None = None
    end: str | None = None
    portfolios: tuple[str, ...] | str = "all"
    notional: float = 1_000_000.0
    models: tuple[tuple[str, str, dict], ...] = ()
    out: str = "reports_out"
    include_funding: bool = False
    smile: bool = False
    description: str = ""
    accounts_file: str | None = None
    carry_forward: bool = True
    executor: str = "auto"
    workers: int | None = None
    scheduler: str | None = None
    books_per_task: int | None = None
    standalone_legs: bool = False
    source: str = "<dict>"
    #: model label -> overlays ``((name, params), ...)`` applied in order (the first innermost)
    model_overlays: dict[str, tuple[tuple[str, dict], ...]] = field(default_factory=dict)
    #: stress scenarios (names of ``marginlab.validation.stress.SCENARIOS``); None: no stress tests
    stress_scenarios: tuple[str, ...] | None = None
    stress_every: int = 1
    reverse_every: int = 0

    def __post_init__(self) -> None:
        validate_fields(self, prefix=f"{self.source}: StudyConfig" if isinstance(self.source, str) else None)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for the JSON report)."""
        return {"name": self.name, "seed": self.seed, "mpor_days": self.mpor_days, "tail_prob": self.tail_prob,
                "assets": list(self.assets), "freq": self.freq, "start": self.start, "end": self.end,
                "portfolios": self.portfolios if isinstance(self.portfolios, str) else list(self.portfolios),
                "notional": self.notional, "include_funding": self.include_funding, "smile": self.smile,
                "models": [{"label": lab, "name": n, "params": p,
                            "overlays": [{"name": o, "params": op} for o, op in self.model_overlays.get(lab, ())]}
                           for lab, n, p in self.models],
                "stress": None if self.stress_scenarios is None else {
                    "scenarios": list(self.stress_scenarios), "every": self.stress_every,
                    "reverse_every": self.reverse_every},
                "accounts": None if self.accounts_file is None else {"file": self.accounts_file,
                                                                     "carry_forward": self.carry_forward},
                "description": self.description, "standalone_legs": self.standalone_legs, "source": self.source,
                "portfolios_left_out": self.reference_books()[1] if self.portfolios else {}}

    def reference_books(self) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The reference portfolios the study replays, and those left out with the assets they miss.

        A book needs every asset it holds in ``market.assets``. Listed by name (``portfolios.reference =
        [...]``), a book that cannot be built is refused: ValueError naming the study file, the book and the
        missing assets. With ``"all"`` such books are left out: returned as name -> missing assets, and
        ``marginlab run``/``sweep`` warn of them, ``results.json``/``sweep.json`` (``study.portfolios_left_out``),
        the report's header and the sweep's summary name them.
        """
        library = reference_portfolios(self.notional)
        names = list(library) if self.portfolios == "all" else list(self.portfolios)
        books, left_out = {}, {}
        for name in names:
            missing = [a for a in library[name].assets if a not in self.assets]
            if missing and self.portfolios != "all":
                raise ValueError(f"{self.source}: portfolios.reference: portfolio {name!r} needs "
                                 f"{', '.join(missing)}, not in market.assets {list(self.assets)}")
            if missing:
                left_out[name] = missing
            else:
                books[name] = library[name]
        return books, left_out

    def left_out_text(self) -> str:
        """One line naming the reference portfolios left out (``"all"`` on a market without their assets)."""
        left_out = self.reference_books()[1]
        if not left_out:
            return ""
        named = "; ".join(f"{n!r} (needs {', '.join(m)})" for n, m in left_out.items())
        return (f"{self.source}: portfolios.reference = 'all' leaves out {len(left_out)} reference portfolio(s) "
                f"whose assets are not all in market.assets {list(self.assets)}: {named}")

    def build_models(self) -> dict[str, MarginModel]:
        """The study's models by label, overlays applied."""
        return {label: build_model(name, params, self.model_overlays.get(label, ()))
                for label, name, params in self.models}


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ValueError(f"{where}: {message}")


def _bare(key: str) -> str:
    """A TOML key as written: bare when it can be, quoted otherwise (spaces, newlines, ...)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else repr(key)


def _table(value: Any, keys: dict[str, Any], source: str, prefix: str) -> dict[str, Any]:
    """Check the TOML table ``prefix`` against ``keys`` (name -> type): unknown keys and wrong types raise."""
    _require(isinstance(value, dict), source, f"[{prefix}] must be a table, got {value!r}")
    for key in value:
        _require(key in keys, source, f"unknown key {prefix}.{_bare(key)}; valid keys: {sorted(keys)}")
    return {key: check_value(v, keys[key], f"{source}: {prefix}.{key}") for key, v in value.items()}


def _utc(value: dt.date) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _iso(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def parse_study(raw: dict[str, Any], source: str = "<dict>") -> StudyConfig:
    """Validate a parsed TOML mapping and return a :class:`StudyConfig`.

    Every key's type comes from :data:`STUDY_KEYS` / :data:`MODEL_KEYS`; ranges
    and names are checked here, model parameters by the model. Raises
    ``ValueError`` naming the file and the key.
    """
    _require(isinstance(raw, dict), source, "a study must be a table of sections")
    for key in raw:
        _require(key in STUDY_KEYS or key == "models", source,
                 f"unknown section [{_bare(key)}]; known sections: {sorted([*STUDY_KEYS, 'models'])}")
    study, market, books, accounts, execution = (_table(raw.get(name, {}), STUDY_KEYS[name], source, name)
                                                 for name in ("study", "market", "portfolios", "accounts",
                                                              "execution"))
    seed = study.get("seed", 0)
    _require(seed >= 0, source, f"study.seed must be a non-negative integer, got {seed!r}")
    mpor = study.get("mpor_days", 1)
    _require(1 <= mpor <= 60, source, f"study.mpor_days must be an integer in [1, 60], got {mpor!r}")
    p = study.get("tail_prob", 0.01)
    _require(0 < p <= 0.5, source, f"study.tail_prob must be in (0, 0.5], got {p!r}")
    assets = market.get("assets")
    _require(bool(assets), source, f"market.assets must be a non-empty list of asset codes, got {assets!r}")
    dup = sorted({a for a in assets if assets.count(a) > 1})
    _require(not dup, source, f"market.assets lists {dup} twice")
    freq = market.get("freq", "1d")
    _require(freq in ("1d", "1h"), source, f"market.freq must be '1d' or '1h', got {freq!r}")
    start, end = market.get("start"), market.get("end")
    for key, value in (("start", start), ("end", end)):
        # a daily row is a day (labelled D 00:00 UTC): a time of day would move the range silently (12:30 on
        # 1 January started at 2 January); an hourly row is an hour: the time must be a whole hour
        if isinstance(value, dt.datetime) and freq == "1d":
            _require(False, source, f"market.{key} must be a date (YYYY-MM-DD) for daily data (market.freq = "
                     f"'1d'), got {value.isoformat()!r}: a daily margin date has no time of day")
        if isinstance(value, dt.datetime):
            _require(_utc(value) == _utc(value).floor("h"), source,
                     f"market.{key} {value.isoformat()!r} is not a whole hour in UTC (market.freq = '1h' margins "
                     "on the hour): give YYYY-MM-DDTHH:00[Z|+HH:00] or a date")
    if start is not None and end is not None:
        _require(_utc(start) <= _utc(end), source,
                 f"market.start {start.isoformat()} is after market.end {end.isoformat()}")
    names = books.get("reference", "all") if "portfolios" in raw or "accounts" not in raw else ()
    known = list(reference_portfolios())
    if names not in ("all", ()):
        _require(isinstance(names, list) and names, source, "portfolios.reference must be 'all' or a list of names")
        unknown = [n for n in names if n not in known]
        _require(not unknown, source, f"unknown reference portfolio(s) {unknown}; known: {known}")
        dup = sorted({n for n in names if names.count(n) > 1})
        _require(not dup, source, f"portfolios.reference lists {dup} twice")
        names = tuple(names)
    notional = books.get("notional", 1_000_000.0)
    _require(notional > 0, source, f"portfolios.notional must be positive, got {notional!r}")
    models_raw = raw.get("models", [])
    _require(isinstance(models_raw, list) and models_raw, source, "at least one [[models]] entry is required")
    models, labels, overlays = [], set(), {}
    for k, entry in enumerate(models_raw):
        where = f"{source}: models[{k}]"
        entry = _table(entry, MODEL_KEYS, source, f"models[{k}]")
        name = entry.get("name")
        _require(name in MODELS, where, f"unknown model {name!r}; registered models: {sorted(MODELS)}")
        params = entry.get("params", {})
        chain = _overlays(entry.get("overlays", []), source, f"models[{k}]")
        try:
            build_model(name, params, chain)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where} ({name}): {exc}") from None
        label = entry.get("label", name)
        _require(bool(label.strip()), where, "label must not be blank")
        _require(label not in labels, where, f"duplicate model label {label!r}; give each model a distinct label")
        labels.add(label)
        models.append((label, name, params))
        if chain:
            overlays[label] = chain
    stress = _table(raw["stress"], STUDY_KEYS["stress"], source, "stress") if "stress" in raw else None
    scenarios, stress_every, reverse_every = None, 1, 0
    if stress is not None:
        from .stress import SCENARIOS

        wanted = stress.get("scenarios", "all")
        if wanted == "all":
            scenarios = tuple(SCENARIOS)
        else:
            _require(isinstance(wanted, list) and wanted, source, "stress.scenarios must be 'all' or a list of names")
            unknown = [n for n in wanted if n not in SCENARIOS]
            _require(not unknown, source, f"unknown stress scenario(s) {unknown}; known: {list(SCENARIOS)}")
            scenarios = tuple(wanted)
        stress_every = stress.get("every", 1)
        _require(stress_every >= 1, source, f"stress.every must be an integer >= 1, got {stress_every!r}")
        reverse_every = stress.get("reverse_every", 0)
        _require(reverse_every >= 0, source, f"stress.reverse_every must be an integer >= 0, got {reverse_every!r}")
    accounts_file = None
    if "accounts" in raw:
        _require("file" in accounts, source, "[accounts] needs file = \"...\" (a position file; see "
                 "marginlab.datasets.read_positions)")
        accounts_file = _relative(accounts["file"], source)
        _require(Path(accounts_file).is_file(), source, f"accounts.file: {accounts_file} is not a file")
    from .executors import EXECUTORS

    executor = execution.get("executor", "remote" if "scheduler" in execution else "auto")
    _require(executor in EXECUTORS, source, f"execution.executor must be one of {list(EXECUTORS)}, got {executor!r}")
    _require((executor == "remote") == ("scheduler" in execution), source,
             "execution.scheduler (a Dask scheduler address such as tcp://host:8786) goes with executor = "
             f"\"remote\" and only with it (executor is {executor!r})")
    for key in ("workers", "books_per_task"):
        _require(execution.get(key, 1) >= 1, source, f"execution.{key} must be an integer >= 1, got "
                 f"{execution.get(key)!r}")
    config = StudyConfig(name=study.get("name", "study"), seed=seed, mpor_days=mpor, tail_prob=float(p),
                       assets=tuple(assets), freq=freq, start=_iso(start), end=_iso(end),
                       portfolios=names, notional=float(notional), models=tuple(models),
                       out=os.path.expanduser(study.get("out", "reports_out")),  # like --out: the working directory
                       include_funding=study.get("include_funding", False),
                       smile=market.get("smile", False), description=study.get("description", ""), source=source,
                       standalone_legs=study.get("standalone_legs", False),
                       model_overlays=overlays, stress_scenarios=scenarios, stress_every=stress_every,
                       reverse_every=reverse_every,
                       accounts_file=accounts_file, carry_forward=accounts.get("carry_forward", True),
                       executor=executor, workers=execution.get("workers"), scheduler=execution.get("scheduler"),
                       books_per_task=execution.get("books_per_task"))
    config.reference_books()  # a listed portfolio whose assets are not all in market.assets is refused here
    return config


def _relative(file: str, source: str) -> str:
    """``file`` relative to the study file's folder (to the working directory for a study given as a dict)."""
    path = Path(file).expanduser()
    if not path.is_absolute() and not source.startswith("<"):
        path = Path(source).resolve().parent / path
    return str(path)


def _overlays(raw: Any, source: str, prefix: str) -> tuple[tuple[str, dict], ...]:
    """The ``overlays`` list of a ``[[models]]`` entry as ``((name, params), ...)`` (keys checked here)."""
    _require(isinstance(raw, list), source, f"{prefix}.overlays must be a list of tables, got {raw!r}")
    out = []
    for k, entry in enumerate(raw):
        entry = _table(entry, OVERLAY_KEYS, source, f"{prefix}.overlays[{k}]")
        _require("name" in entry, source, f"{prefix}.overlays[{k}] needs a name")
        out.append((entry["name"], entry.get("params", {})))
    return tuple(out)


def read_toml(path: str | Path, what: str = "study") -> dict[str, Any]:
    """Read a TOML file marginlab is given (a study or a grid): ValueError naming the file when it cannot.

    The file must be UTF-8 (a byte-order mark is skipped); a folder, a missing, unreadable or non-UTF-8 file
    or invalid TOML raises ValueError naming it.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a {what} file; give the path of a {what} TOML file")
    if not path.exists():
        raise ValueError(f"{what} file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(f"{path}: is UTF-16 text; TOML files are UTF-8: save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                         "TOML files are UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None


def load_study(path: str | Path | None = None) -> StudyConfig:
    """Read and validate a study TOML file (default: the bundled default study).

    The file must be UTF-8 (a byte-order mark is skipped); a folder, an
    unreadable or non-UTF-8 file or invalid TOML raises ValueError naming it.
    """
    path = Path(path) if path is not None else _default_study()
    return parse_study(read_toml(path), source=str(path))


@dataclass
class StudyResult:
    """A study's configuration, backtest result, coverage and metrics tables, and report location.

    ``files`` holds the run's facts the report shows (``started``: ISO time in UTC, ``elapsed_s``,
    ``out``: the report folder). :meth:`verdict` is the verdict matrix of the report's first screen and
    :meth:`verdict_text` the same as text (what ``marginlab run`` prints).
    ``procyclicality`` and ``apc`` are :meth:`BacktestResult.procyclicality` and
    :meth:`BacktestResult.apc_tradeoff`; with a ``[stress]`` section, ``stress`` is
    :func:`~marginlab.validation.stress.stress_coverage`, ``cover`` :func:`~marginlab.validation.stress.cover_n`
    and ``reverse`` :func:`~marginlab.validation.stress.reverse_stress` (None without).
    """

    config: StudyConfig
    backtest: BacktestResult
    coverage: pd.DataFrame
    metrics: pd.DataFrame
    report_path: Path | None = None
    files: dict[str, Any] = field(default_factory=dict)
    #: every coverage test per (book, model), as :attr:`coverage` summarises them (see :meth:`coverage_reports`)
    reports: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    #: a parameter sweep's tidy table (one row per grid point x book x model), when the study is a sweep
    sweep: pd.DataFrame | None = None
    procyclicality: pd.DataFrame | None = None
    apc: pd.DataFrame | None = None
    stress: pd.DataFrame | None = None
    cover: pd.DataFrame | None = None
    reverse: pd.DataFrame | None = None
    #: :func:`~marginlab.validation.stress.not_applicable`: book/scenario pairs without a stress loss, and why
    stress_na: pd.DataFrame | None = None

    def coverage_reports(self) -> dict[tuple[str, str], Any]:
        """Every coverage test per (book, model) of :attr:`coverage` (computed once, when not given).

        :class:`~marginlab.validation.coverage.CoverageReport` of each pair, each model at its own level
        on the book's common sample.
        """
        missing = [key for key in self.coverage.index if key not in self.reports]
        for key in missing:
            self.reports[key] = self.backtest.coverage_report(*key, default_p=self.config.tail_prob)
        return self.reports

    def verdict(self) -> dict[str, Any]:
        """The verdict matrix (books x models; :func:`marginlab.reports.verdict.verdict_matrix`)."""
        from marginlab.reports.verdict import verdict_matrix

        return verdict_matrix(self.backtest, self.coverage)

    def verdict_text(self) -> str:
        """The verdict matrix as terminal text, with its three sentences."""
        from marginlab.reports.verdict import verdict_text

        return verdict_text(self.verdict())

    #: the columns of the member accounts' table printed by ``marginlab run`` and ``marginlab show``
    ACCOUNT_COLUMNS = ("accounts", "account_days", "breaches", "breach_rate", "margin_breaches", "accounts_with_breach",
                       "largest_shortfall", "median_account_coverage", "accounts_below_target", "held_days_untested")

    def accounts_text(self) -> str:
        """The member accounts' pooled back-test per model (CPMI-IOSCO PQD 6.5) as text; empty without accounts."""
        bt = self.backtest
        untested = bt.untested_text()
        from marginlab.reports.formatting import frame_text
        from marginlab.reports.sections import ACCOUNT_UNITS, account_count_names, no_account_replayed

        if not bt.accounts:
            idle = f"Member accounts: {no_account_replayed(bt)}" if no_account_replayed(bt) else ""
            return "\n".join(x for x in (idle, untested) if x)

        table = bt.accounts_summary(self.config.tail_prob)[list(self.ACCOUNT_COLUMNS)]
        table = table.rename(columns=account_count_names(self.config.freq))  # observations, not days, when hourly
        idle = f"; {len(bt.idle_accounts)} more hold no book in the study's dates" if bt.idle_accounts else ""
        text = f"Member accounts ({len(bt.accounts)}{idle}):\n{frame_text(table, ACCOUNT_UNITS)}"
        return f"{text}\n{untested}" if untested else text

    def stress_text(self) -> str:
        """What the stress tests could not test, in one sentence (empty when every scenario applied, or no stress).

        Names the scenarios without a stress loss for a book and why (e.g. an asset not yet listed in an
        episode); says so when no requested scenario gave any stress loss, so that the absence of a stress
        coverage table is never silent. ``marginlab run`` prints it and the report's stress section shows it.
        """
        if self.config.stress_scenarios is None:
            return ""
        na = self.stress_na if self.stress_na is not None else pd.DataFrame(columns=["scenario", "reason"])
        parts = []
        for (scenario, reason), group in na.groupby(["scenario", "reason"], sort=False):
            books = list(dict.fromkeys(group["portfolio"]))
            who = ", ".join(books) if len(books) <= 3 else f"{len(books):,} books"
            parts.append(f"{scenario} is n/a for {who} ({reason})")
        listed = "; ".join(parts)
        if self.stress is None or not len(self.stress):
            names = ", ".join(self.config.stress_scenarios)
            if not parts:
                return f"Stress: no book has a stress date in the study's dates; no stress coverage ({names})."
            return (f"Stress: none of the requested scenarios ({names}) gives a stress loss to the study's books, "
                    f"so there is no stress coverage, Cover-1/2 or stress_coverage.csv: {listed}.")
        return f"Stress scenarios not tested: {listed}." if parts else ""

    def summary(self) -> str:
        """Breach table plus the headline coverage tests."""
        cov = self.coverage[["p", "breaches", "observations", "breach_rate", "kupiec_pvalue", "kupiec_direction",
                             "too_many_pvalue", "christoffersen_cc_pvalue", "traffic_light_zone",
                             "worst_window_pvalue"]]
        bt = self.backtest
        with pd.option_context("display.width", 250, "display.max_rows", 500, "display.max_colwidth", 60,
                               "display.float_format", "{:.4g}".format):
            head = (f"Study {self.config.name!r} (seed {self.config.seed}, MPOR {self.config.mpor_days} "
                    f"observation(s) of {self.config.freq}, "
                    f"rule-based models tested at p = {self.config.tail_prob:g}, risk models at their own level)")
            if bt.accounts:
                reference = bt.frame[~bt.frame["portfolio"].isin(set(bt.accounts))]
                table = BacktestResult(reference, bt.mpor_days, bt.models).summary() if len(reference) else ""
                text = f"{head}\n\n{table}\n\n{self.accounts_text()}"
            else:
                text = f"{head}\n\n{bt.summary()}"
            return text + (f"\n\nCoverage (exact p-values):\n{cov.to_string()}" if len(cov) else "")


def check_study_range(config: StudyConfig, market) -> None:
    """A study's ``market.start``/``market.end`` inside the loaded data, else ValueError naming the file and key."""
    for key, value in (("start", config.start), ("end", config.end)):
        if value is not None and not market.index[0] <= utc(value) <= market.index[-1]:
            raise ValueError(f"{config.source}: market.{key} {value} is outside the data of {list(config.assets)} "
                             f"({market.index[0]:%Y-%m-%d} .. {market.index[-1]:%Y-%m-%d})")


def run_study(study: str | Path | StudyConfig | None = None, out: str | Path | None = None,
              write: bool = True, progress: Progress | None = None, *, executor: str | None = None,
              workers: int | None = None, scheduler: str | None = None,
              books_per_task: int | None = None) -> StudyResult:
    """Run a study and (by default) write its report to ``out`` (or the config's ``study.out``).

    ``progress`` (:class:`~marginlab.validation.progress.Progress`) shows the stages and a bar over the
    backtest's tasks on a terminal; nothing is shown by default. ``executor``, ``workers``, ``scheduler`` and
    ``books_per_task`` override the study's ``[execution]`` section
    (:func:`marginlab.validation.executors.make_executor`); the result is the same whichever runs it.
    """
    progress = progress if progress is not None else Progress(enabled=False)
    started = dt.datetime.now(dt.UTC)
    config = study if isinstance(study, StudyConfig) else load_study(study)
    requested = str(out if out is not None else config.out)
    if write:  # a bad output folder fails now, not after the backtest
        from marginlab.reports import check_report_folder

        out = check_report_folder(out if out is not None else config.out, warn_leftovers=False)  # warned on writing
    # the whole bundled history is loaded: start/end select the margin dates, and every model sees all the
    # history before the first one (no warm-up spent inside the requested range)
    progress.stage(f"loading market data ({', '.join(config.assets)}, {config.freq})")
    market = load_market(list(config.assets), freq=config.freq, with_option_chains=config.smile)
    books, left_out = config.reference_books()
    if left_out:
        warnings.warn(config.left_out_text(), stacklevel=2)
    accounts: dict = {}
    if config.accounts_file is not None:
        table = read_positions(config.accounts_file, carry_forward=config.carry_forward, market=market)
        accounts = account_books(table)
        clash = sorted(set(accounts) & set(books))
        if clash:
            raise ValueError(f"{config.accounts_file}: account(s) {clash[:3]} have the names of reference portfolios; "
                             "rename them")
        books.update(accounts)
    if not books:
        raise ValueError(f"{config.source}: no portfolio can be built from market.assets {list(config.assets)}")
    models = config.build_models()
    check_study_range(config, market)
    backtest = Backtest(market, books, models, mpor_days=config.mpor_days, start=config.start, end=config.end,
                        include_funding=config.include_funding, seed=config.seed,
                        standalone_legs=config.standalone_legs)
    kind = executor if executor is not None else ("remote" if scheduler is not None else config.executor)
    n_workers = workers if workers is not None else config.workers
    per_task = books_per_task if books_per_task is not None else config.books_per_task
    split_models = len(books) <= _MANY_BOOKS
    progress.stage(f"replaying {len(books)} book(s) through {len(models)} model(s)")
    with make_executor(kind, workers=n_workers, scheduler=scheduler if scheduler is not None else config.scheduler,
                       n_tasks=len(backtest.tasks(per_task, split_models)), progress=progress,
                       label="tasks (model groups)") as runner:
        if per_task is None and not split_models:  # many books: a few tasks per worker
            per_task = max(1, math.ceil(len(books) / (4 * max(1, runner.workers))))
        elif per_task is None and runner.workers > 1:
            # each model group's books split in one group per worker: the costliest model (EWMA's 10,000 full
            # revaluations per book and date) no longer runs as one task that the others wait for; the
            # result is the same bytes on any split (tests/test_contract.py)
            per_task = max(1, math.ceil(len(books) / runner.workers))
        result = backtest.run(executor=runner, books_per_task=per_task, split_models=split_models)
        # the coverage tests run on the workers of a local cluster (the same bytes: the same machine and
        # libraries, one BLAS thread in each process), while this process runs the other analyses
        local = runner if getattr(runner, "local", False) else None
        sr = _analyse(config, result, market, [n for n in books if n not in accounts], progress, local)
        sr.files["started"] = started.strftime("%Y-%m-%d %H:%M:%S UTC")
        sr.files["elapsed_s"] = (dt.datetime.now(dt.UTC) - started).total_seconds()
        if write:
            from marginlab.reports import write_report

            sr.files["out"] = requested
            progress.stage("writing the report")
            # the figures are drawn on the workers of a local cluster (the same bytes: the same machine and
            # libraries); a remote cluster's machines may draw them otherwise, so they are drawn here
            sr.report_path = write_report(sr, out, executor=local)
    return sr


def _analyse(config: StudyConfig, result: BacktestResult, market, reference: list[str],
             progress: Progress, executor=None) -> StudyResult:
    """The full battery of tests and metrics per reference book, procyclicality and the stress tests.

    Member accounts get the account-level view (:meth:`BacktestResult.accounts_summary` & co.). Given a local
    ``executor`` (a :class:`~marginlab.validation.executors.DaskExecutor` whose workers are processes of this
    machine), the coverage tests run on its workers (one task per book) while this process computes
    procyclicality and the stress tests; the results are the same as in one process.
    """
    pairs = result._pairs(reference)
    if executor is None:
        progress.stage("coverage tests")
        # every coverage test of every pair, run once: the headline table and the report's drill-down share them
        reports = result.coverage_reports(pairs, default_p=config.tail_prob)
        return _analyse_rest(config, result, market, reference, progress, reports)
    from concurrent.futures import ThreadPoolExecutor

    progress.stage("coverage tests (on the workers) with procyclicality and stress tests (here)")
    quiet = replace(executor, progress=None)  # the same cluster, without a progress bar (another thread draws)
    with ThreadPoolExecutor(1, thread_name_prefix="marginlab-coverage") as pool:
        # waited for in _analyse_rest; an interrupt stops the wait and the executor cancels its tasks
        running = pool.submit(result.coverage_reports, pairs, default_p=config.tail_prob, executor=quiet)
        return _analyse_rest(config, result, market, reference, Progress(enabled=False), running)


def _analyse_rest(config: StudyConfig, result: BacktestResult, market, reference: list[str],
                  progress: Progress, reports) -> StudyResult:
    """:func:`_analyse` after the coverage tests started: ``reports`` is their result, or a future of it.

    ``progress`` a silent one when these stages run beside the coverage tests (whose stage is shown).
    """
    stage = progress.stage
    stage("procyclicality")
    procyclicality, apc = result.procyclicality(), result.apc_tradeoff()
    stress: dict[str, Any] = {}
    if config.stress_scenarios is not None:
        from .stress import cover_n, not_applicable, reverse_stress, state_losses, stress_coverage, stress_losses

        stage(f"stress tests ({len(config.stress_scenarios)} scenarios)")
        states = state_losses(result, market, config.stress_scenarios, every=config.stress_every)
        frame = stress_losses(result, market, config.stress_scenarios, every=config.stress_every, states=states)
        stress.update(stress=stress_coverage(frame), cover=cover_n(frame, states=states),
                      stress_na=not_applicable(frame, result.portfolios, market, config.stress_scenarios,
                                               result.mpor_days))
        if config.reverse_every:
            stage("reverse stress")
            stress["reverse"] = reverse_stress(result, market, every=config.reverse_every)
    reports = reports if isinstance(reports, dict) else reports.result()
    coverage = result.coverage(default_p=config.tail_prob, reports=reports, portfolios=reference)
    metrics = result.efficiency(portfolios=reference)
    return StudyResult(config=config, backtest=result, coverage=coverage, metrics=metrics, reports=reports,
                       procyclicality=procyclicality, apc=apc, **stress)


#: Above this many portfolios (e.g. member accounts) a task runs every model on a group of books, so that each
#: book's positions and realised P&L are built by one task (see :meth:`Backtest.tasks`).
_MANY_BOOKS = 20
