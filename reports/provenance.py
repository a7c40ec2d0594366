"""Where a report's numbers come from: package versions, data files, study file, seed, commit, command.

Everything here is read, never guessed: versions from the installed distributions,
data files with the sha256 recorded in the bundled ``datasets/data/MANIFEST.sha256``,
the study file's text as it is on disk, the git commit of the source checkout when
marginlab runs from one, else the commit recorded in the installed version at build time
(setuptools-scm's ``+g<hash>``; ``None`` when neither exists, e.g. a build without git).
"""

from __future__ import annotations

import platform
import shlex
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "package_versions", "data_files", "git_commit", "study_text", "reproduce_command",
           "provenance", "run_metadata"]

#: Distributions whose versions a report records.
PACKAGES = ("marginlab", "numpy", "pandas", "scipy", "numba", "arch", "statsmodels", "matplotlib")


def package_versions() -> dict[str, str]:
    """Python and the versions of :data:`PACKAGES` (``"not installed"`` when absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    if _checkout() is not None and out["marginlab"] != "not installed":
        # an editable install's version is frozen when it was installed; the code running is the checkout's
        out["marginlab"] += " (as installed; the code running is the checkout's, see the git commit)"
    return out


def _data_dir() -> Path:
    from marginlab.datasets.loaders import DATA_DIR

    return Path(DATA_DIR)


def data_files(assets: list[str], freq: str, smile: bool) -> list[dict[str, Any]]:
    """The bundled data files with their manifest sha256, each flagged ``used`` when the study reads it.

    A study reads the price files of its assets at its frequency, the implied-vol files of its
    assets, the funding files, and the option chains when ``smile`` is on.
    """
    manifest = _data_dir() / "MANIFEST.sha256"
    files = []
    if not manifest.is_file():
        return files
    lower = {a.lower() for a in assets}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        digest, name = line.split(None, 1)
        name = name.strip()
        stem = name.split(".")[0]
        parts = stem.split("_")
        used = (stem.startswith(f"prices_{freq}_") and parts[-1] in lower) or (
            stem.startswith("implied_vol_") and parts[-1] in lower) or stem.startswith("funding_") or (
            smile and stem.startswith("options_"))
        files.append({"file": name, "sha256": digest, "used": bool(used)})
    return files


def installed_commit(installed: str | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty", "recorded"}`` from the installed version's local part, or None without one.

    setuptools-scm builds marginlab's version from git: ``0.1.1.dev440+g58e316774`` names the (abbreviated)
    commit, and ``.d20261201`` after it says the tree had uncommitted changes when it was built.
    ``installed`` defaults to the installed distribution's version.
    """
    if installed is None:
        try:
            installed = version("marginlab")
        except PackageNotFoundError:
            return None
    local = installed.partition("+")[2].split(".")
    if not local[0].startswith("g") or len(local[0]) < 8:
        return None
    return {"commit": local[0][1:], "dirty": any(p.startswith("d") for p in local[1:]),
            "recorded": f"in the installed version {installed}"}


def _checkout() -> Path | None:
    """The root of the git checkout marginlab runs from (an editable install), None when it runs from elsewhere."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / ".git").exists() else None


def git_commit() -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the source checkout marginlab runs from; else :func:`installed_commit`."""
    root = _checkout()
    if root is None:
        return installed_commit()
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status)} if commit else None


def study_text(source: str) -> str | None:
    """The study file's text as on disk (None when the study was not read from a file)."""
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8-sig") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def reproduce_command(source: str, out: str | None) -> str:
    """The shell command that reruns the study into the same folder."""
    return "marginlab run " + shlex.quote(source) + (f" --out {shlex.quote(str(out))}" if out else "")


def provenance(config) -> dict[str, Any]:
    """Everything the provenance section shows, as a JSON-ready dict: what the numbers depend on.

    The facts of one run (when, how long, the command with its output folder) are not here but in
    :func:`run_metadata`, so that two runs of a study with the same seed give the same provenance.
    """
    return {"packages": package_versions(), "platform": platform.platform(),
            "data_files": data_files(list(config.assets), config.freq, config.smile),
            "manifest": "datasets/data/MANIFEST.sha256", "study_file": config.source,
            "study_text": study_text(config.source), "study_config": config.to_dict(), "seed": config.seed,
            "git": git_commit()}


def run_metadata(study) -> dict[str, Any]:
    """The facts of one run, the only part of a report that differs between runs with the same seed.

    ``results.json``'s ``run`` block and the report's "Run metadata" block: ``started`` (UTC), ``elapsed_s``
    (loading, backtest and tests; writing the report comes after), ``replay_s`` (the backtest), ``model_seconds``
    (compute time per model, summed over tasks) and ``command`` (what reruns the study into the same folder;
    None when the study was not read from a file).
    """
    files, bt, config = study.files, study.backtest, study.config
    return {"started": files.get("started"), "elapsed_s": files.get("elapsed_s"),
            "replay_s": getattr(bt, "elapsed_s", None),
            "model_seconds": {str(k): float(v) for k, v in getattr(bt, "model_seconds", {}).items()},
            "command": reproduce_command(config.source, files.get("out")) if Path(config.source).is_file() else None}
