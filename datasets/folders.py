"""Folders marginlab writes whole: recognised by their manifest, replaced atomically.

A study report (``marginlab run --out DIR``) and a dataset build
(``marginlab datasets build --out DIR``) are written as a whole folder, under
three rules:

1. **Only what marginlab wrote is replaced.** The folder must not exist, be
   empty, or be one marginlab wrote before, recognised by its *manifest*: a file
   inside it listing the sha256 of every file marginlab wrote there
   (``.marginlab-report`` for a report, ``MANIFEST.sha256`` for a dataset build),
   plus a signature line. Anything else is refused with one line naming the
   folder: a file, a folder holding any file the manifest does not list, a listed
   file changed since marginlab wrote it, the working directory or a folder
   containing it. No option overrides this.
2. **The replacement is atomic.** The new folder is written in full into a
   temporary sibling (each file fsynced, then read back and checked against the
   manifest) and swapped with the old folder in one system call: on Linux
   ``renameat2(RENAME_EXCHANGE)``, on macOS ``renamex_np(RENAME_SWAP)``. At every
   instant the path holds either the old folder or the new one, whole. Where no
   exchange call exists (other systems, or a filesystem that refuses it) the old
   folder is renamed aside and the new one renamed into place; a crash between
   those two renames leaves the old folder next to it as ``.NAME.marginlab-old-*``.
3. **The old folder is removed file by file.** Only files its manifest lists,
   whose content still matches, are deleted; a file that appeared meanwhile stays
   where it is (with a warning naming the folder).

Output locations are checked (:func:`check_output_folder`) before any long
computation, so that a bad ``--out`` fails in a second, and again just before
writing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import glob
import hashlib
import os
import re
import secrets
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FolderKind", "check_output_folder", "publish_folder", "read_manifest", "exchange_paths"]

_LINE = re.compile(r"([0-9a-f]{64})  ([^/\\\n\r]+)")


@dataclass(frozen=True)
class FolderKind:
    """What a folder marginlab writes whole is, and how it is recognised.

    Parameters
    ----------
    what : str
        Name used in messages, e.g. ``"marginlab report"``.
    manifest : str
        File name of the manifest inside the folder: optional ``#`` comment lines,
        then one ``<sha256>  <file name>`` line per file (``sha256sum`` format),
        sorted by name.
    header : str
        First line(s) of the manifest (``""`` for none).
    signature : tuple of (str, bytes)
        ``(file, prefix)``: a folder is recognised as this kind only when its
        manifest lists ``file`` (or ``file`` is the manifest) and that file starts
        with ``prefix``.
    """

    what: str
    manifest: str
    header: str
    signature: tuple[str, bytes]

    def manifest_bytes(self, files: Mapping[str, bytes], comments: Sequence[str] = ()) -> bytes:
        """The manifest of ``files`` (name -> content), with ``# comment`` lines after the header."""
        notes = "".join(f"# {' '.join(str(c).split())}\n" for c in comments)
        lines = "".join(f"{_sha256(data)}  {name}\n" for name, data in sorted(files.items()))
        return (self.header + notes + lines).encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    """Digest of a regular file (not a symlink), or None when it is something else or unreadable."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return _sha256(path.read_bytes())
    except OSError:
        return None


def read_manifest(folder: str | Path, kind: FolderKind) -> dict[str, str] | None:
    """Files (name -> sha256) that ``folder``'s manifest lists, or None when it is not a ``kind`` folder.

    A folder is recognised when its manifest parses (every non-comment line is
    ``<sha256>  <name>``) and the signature file starts with the signature prefix.
    """
    folder = Path(folder)
    path = folder / kind.manifest
    if path.is_symlink() or not path.is_file():
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith(kind.header):
        return None
    listed: dict[str, str] = {}
    for line in text[len(kind.header):].splitlines():
        if line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None or match[2] in (".", "..", kind.manifest):
            return None
        listed[match[2]] = match[1]
    sig_file, prefix = kind.signature
    if sig_file != kind.manifest and sig_file not in listed:
        return None
    try:
        with open(folder / sig_file, "rb") as fh:
            if fh.read(len(prefix)) != prefix:
                return None
    except OSError:
        return None
    return listed


def _shown(path: str | Path, real: Path) -> str:
    given = str(path)
    return given if Path(given) == real else f"{given} ({real})"


def _names(names: Sequence[str], limit: int = 5) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_output_folder(out: str | Path, kind: FolderKind, warn_leftovers: bool = True) -> Path:
    """Check that marginlab may write the ``kind`` folder ``out``; return its resolved path.

    ``warn_leftovers``: warn about temporary folders an interrupted run left beside ``out`` (callers
    checking the same folder again pass False, so that a run warns once).

    Raises
    ------
    ValueError
        One line naming the folder: ``out`` is a file or another non-folder, a
        broken symbolic link, the working directory or one of its parents, a
        non-empty folder marginlab did not write (no manifest, files the manifest
        does not list, listed files changed since), or a location that cannot be
        created or written.
    """
    if not str(out).strip():
        raise ValueError(f"output folder for the {kind.what} is an empty path")
    path = Path(out)
    if path.is_symlink() and not path.exists():
        raise ValueError(f"{out}: is a broken symbolic link; give a new or empty folder for the {kind.what}")
    real = path.resolve()
    shown = _shown(out, real)
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        where = "the working directory" if real == cwd else "a parent of the working directory"
        raise ValueError(f"{shown}: is {where}; give a new or empty folder for the {kind.what}")
    if real.exists() or real.is_symlink():
        if not real.is_dir():
            raise ValueError(f"{shown}: is a file, not a folder; marginlab writes the {kind.what} only into a new "
                             f"folder, an empty one or a previous {kind.what}")
        try:
            entries = set(os.listdir(real))
        except OSError as exc:
            raise ValueError(f"{shown}: cannot be read ({exc.strerror})") from None
        if entries:
            listed = read_manifest(real, kind)
            if listed is None:
                raise ValueError(f"{shown}: folder is not empty and is not a previous {kind.what} (no marginlab "
                                 f"{kind.manifest} in it); marginlab replaces only folders it wrote: give a new or "
                                 "empty folder")
            extra = entries - set(listed) - {kind.manifest}
            if extra:
                raise ValueError(f"{shown}: holds files marginlab did not write ({_names(extra)}); move them away "
                                 "or give another folder")
            changed = [n for n, digest in listed.items() if n in entries and _file_sha256(real / n) != digest]
            if changed:
                raise ValueError(f"{shown}: {_names(changed)} changed since marginlab wrote it; move it away or "
                                 "give another folder")
        parent = real.parent
    else:
        parent = next(p for p in real.parents if p.exists() or p.is_symlink())
        if not parent.is_dir():
            raise ValueError(f"{shown}: cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{shown}: cannot be written: folder {parent} is not writable")
    try:  # permissions are not the whole story (root, read-only mounts, /proc): create and remove a folder there
        os.rmdir(tempfile.mkdtemp(prefix=f".{real.name}.marginlab-probe-", dir=parent))
    except OSError as exc:
        raise ValueError(f"{shown}: cannot be written: no folder can be created in {parent} "
                         f"({exc.strerror or exc})") from None
    left = sorted(p.name for stage in ("new", "old")
                  for p in parent.glob(f".{glob.escape(real.name)}.marginlab-{stage}-*")) if warn_leftovers else []
    if left:
        warnings.warn(f"{shown}: left beside it by an interrupted marginlab run (killed while writing): "
                      f"{_names(left)}; marginlab does not delete what it cannot prove it wrote: check and remove",
                      stacklevel=2)
    return real


# --------------------------------------------------------------------------- atomic exchange

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h
_RENAME_SWAP = 2  # macOS sys/stdio.h


class _NoExchange(OSError):
    """The system or the filesystem offers no atomic exchange of two paths."""


def _libc():
    name = ctypes.util.find_library("c") if sys.platform == "darwin" else None
    return ctypes.CDLL(name, use_errno=True)


def exchange_paths(a: str | Path, b: str | Path) -> None:
    """Swap two existing paths atomically (``renameat2(RENAME_EXCHANGE)`` / ``renamex_np(RENAME_SWAP)``).

    Raises
    ------
    OSError
        A subclass ``_NoExchange`` when the system or filesystem has no such call,
        otherwise the error of the call (nothing has changed then).
    """
    fa, fb = os.fsencode(os.fspath(a)), os.fsencode(os.fspath(b))
    try:
        libc = _libc()
    except OSError:
        raise _NoExchange(errno.ENOSYS, "no C library to call") from None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        call = libc.renameat2
        call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        result = call(_AT_FDCWD, fa, _AT_FDCWD, fb, _RENAME_EXCHANGE)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        call = libc.renamex_np
        call.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        result = call(fa, fb, _RENAME_SWAP)
    else:
        raise _NoExchange(errno.ENOSYS, "no atomic exchange on this system")
    if result != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise _NoExchange(err, os.strerror(err))
        raise OSError(err, os.strerror(err), os.fspath(a), None, os.fspath(b))


# --------------------------------------------------------------------------- writing

def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(folder: Path, known: Mapping[str, str], created: Sequence[str] = ()) -> bool:
    """Delete the files of ``known`` (name -> sha256) that still match, then the folder if empty.

    ``created`` names files this process created (``O_EXCL``) in a folder it made
    itself: they are deleted even when incomplete.
    """
    for name in created:
        try:
            os.unlink(folder / name)
        except OSError:
            pass
    for name, digest in known.items():
        if _file_sha256(folder / name) == digest:
            try:
                os.unlink(folder / name)
            except OSError:
                pass
    try:
        os.rmdir(folder)
    except OSError:
        return False
    return True


def _dir_mode(existing: Path | None) -> int:
    if existing is not None:
        return os.stat(existing).st_mode & 0o7777
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def publish_folder(out: str | Path, files: Mapping[str, bytes], kind: FolderKind,
                   comments: Sequence[str] = ()) -> Path:
    """Write ``files`` (name -> content) and their manifest as the folder ``out``, atomically.

    ``out`` is checked again (:func:`check_output_folder`); the new folder is
    written into a temporary sibling, verified, then swapped in (see the module
    docstring). Returns the resolved path of ``out``.
    """
    bad = [n for n in files if n in ("", ".", "..", kind.manifest) or "/" in n or "\\" in n]
    if bad:
        raise ValueError(f"invalid file name(s) for the {kind.what}: {bad}")
    real = check_output_folder(out, kind, warn_leftovers=False)
    try:
        return _publish(real, files, kind, comments)
    except OSError as exc:  # one line naming the folder asked for, not the temporary sibling it failed in
        raise ValueError(f"{_shown(out, real)}: the {kind.what} could not be written ({exc.strerror or exc})") \
            from None


def _publish(real: Path, files: Mapping[str, bytes], kind: FolderKind, comments: Sequence[str]) -> Path:
    """:func:`publish_folder` after the checks: write into a temporary sibling, verify, swap in."""
    existing = real if real.is_dir() else None
    real.parent.mkdir(parents=True, exist_ok=True)
    content = {**files, kind.manifest: kind.manifest_bytes(files, comments)}
    digests = {name: _sha256(data) for name, data in content.items()}
    tmp: Path | None = Path(tempfile.mkdtemp(prefix=f".{real.name}.marginlab-new-", dir=real.parent))
    holds = digests  # what ``tmp`` holds: the new folder until the swap, the old one after it
    created: list[str] = []  # files of ours in ``tmp``, complete or not, until the swap
    try:
        for name, data in content.items():
            created.append(name)
            _write_new(tmp / name, data)
        os.chmod(tmp, _dir_mode(existing))
        _fsync_dir(tmp)
        unreadable = [n for n, digest in digests.items() if _file_sha256(tmp / n) != digest]
        if unreadable:
            raise OSError(errno.EIO, f"files read back differ from what was written: {unreadable}", str(tmp))
        if existing is None:
            os.rename(tmp, real)
            tmp = None
        else:
            old = read_manifest(real, kind) or {}
            old = {**old, kind.manifest: _file_sha256(real / kind.manifest) or ""}
            try:
                exchange_paths(tmp, real)
            except _NoExchange:
                aside = real.parent / f".{real.name}.marginlab-old-{secrets.token_hex(4)}"
                os.rename(real, aside)
                try:
                    os.rename(tmp, real)
                except BaseException:
                    os.rename(aside, real)
                    raise
                tmp = aside
            holds, created = old, []
        _fsync_dir(real.parent)
    finally:
        if tmp is not None and not _discard(tmp, holds, created):
            warnings.warn(f"marginlab left {tmp}: it holds files marginlab did not write, or removing one failed",
                          stacklevel=2)
    return real
