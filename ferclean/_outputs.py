"""The output guard: every file and folder ferclean writes goes through here.

The rules (the user's version is in ``docs/cli.md``, "What ferclean writes and replaces"):

1. **Never an input.** An output is never one of the command's inputs, never inside an
   input folder and never a folder that holds an input. Paths are compared resolved, so
   ``./d.csv``, ``a/../d.csv`` or a symbolic link do not slip through. Two outputs of one
   command never lie inside one another either (``--write-plan`` inside ``--out``).
2. **Never a thing ferclean did not write, unless told.** An existing output is replaced
   only with ``overwrite=True`` (``--overwrite``). A folder is replaced only if ferclean
   wrote it: it holds the marker file :data:`MARKER`, which every output folder gets, or
   only the files that output holds (folders written before the marker). A non-empty
   folder ferclean did not write is never replaced, not even with ``overwrite=True``. An
   empty folder holds nothing to lose and counts as free.
3. **Replaced as a unit.** Everything is written into a temporary sibling
   (``.ferclean-tmp-*``) and renamed into place when complete. The old output is set
   aside first and deleted only once the new one is in place.
4. **Checked again at the final rename.** If an output appears while this run is writing
   (another run with the same ``--out``), it is not replaced without ``overwrite=True``.
   Renaming a folder never lands on a non-empty folder, and a file is hard-linked into
   place, which fails if the name exists. So of two racing runs only one can succeed.
5. **Said in one line.** A replaced output, and the temporary files of dead runs that were
   cleared away, are logged on the ``ferclean.outputs`` logger at INFO level. The CLI
   prints these lines.

Temporary names carry the writer's host and process id
(``.ferclean-tmp-<host>.<pid>@<name>.<random>``). The next write into the same folder
removes those of dead processes on this host, and moves a set-aside old output
(``.ferclean-old-*``) back into place if its replacement never arrived.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ferclean.errors import FercleanError

__all__ = [
    "MARKER",
    "OutputError",
    "OutputExistsError",
    "OutputPathError",
    "check_not_input",
    "check_output",
    "claim_dir",
    "clear_stale",
    "dataset_inputs",
    "display_path",
    "output_dir",
    "output_file",
    "source_inputs",
    "write_marker",
]

#: The file every output folder holds, so that ferclean recognises its own folders.
MARKER = ".ferclean-output"
_TMP, _OLD = ".ferclean-tmp-", ".ferclean-old-"
# A short, stable tag of this host: a process id means nothing on another machine.
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_STAMPED = re.compile(r"^\.ferclean-(tmp|old)-([0-9a-f]{6})\.(\d+)@(.+)$", re.DOTALL)
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
# os.link fails with these where the file system has no hard links
_NO_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS,
             getattr(errno, "ENOTSUP", errno.EPERM), getattr(errno, "EOPNOTSUPP", errno.EPERM)}

logger = logging.getLogger("ferclean.outputs")

PathLike = str | os.PathLike


class OutputError(FercleanError):
    """An output that ferclean may not, or could not, write; the message names it.

    Examples
    --------
    >>> issubclass(OutputExistsError, OutputError) and issubclass(OutputExistsError,
    ...                                                            FileExistsError)
    True
    """


class OutputExistsError(OutputError, FileExistsError):
    """The output exists (or appeared meanwhile) and ``overwrite`` was not given.

    Examples
    --------
    >>> str(OutputExistsError("out exists"))
    'out exists'
    """


class OutputPathError(OutputError, ValueError):
    """An output path that is never allowed: an input, or a name outside its folder.

    Examples
    --------
    >>> issubclass(OutputPathError, ValueError)
    True
    """


def display_path(path: PathLike, *, folder: bool = False) -> str:
    """``path`` as messages show it: normalised, and with one ``/`` after a folder.

    Examples
    --------
    >>> display_path("clean/", folder=True), display_path("./a//b.csv")
    ('clean/', 'a/b.csv')
    """
    text = str(Path(path))
    return text + "/" if folder and not text.endswith(os.sep) else text


def dataset_inputs(*datasets: object) -> tuple[str, ...]:
    """The files or folders the datasets were read from, where they exist.

    The demo data has none; neither has a dataset restored from a release, which records
    its input by name only (restoring it under that name is no overwrite).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from ferclean.dataset import FaceDataset
    >>> here = tempfile.mkdtemp()
    >>> dataset_inputs(FaceDataset(np.zeros((1, 48, 48), np.uint8), source=here), None) == (
    ...     here,)
    True
    """
    return source_inputs(*(getattr(ds, "source", None) for ds in datasets))


def source_inputs(*sources: PathLike | None) -> tuple[str, ...]:
    """The datasets' recorded sources that exist as files or folders (not ``"demo"``).

    Examples
    --------
    >>> source_inputs(None, "demo", "/no/such/file.csv")
    ()
    """
    return tuple(str(s) for s in sources
                 if s and str(s) != "demo" and os.path.lexists(s))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stamp(target: Path, kind: str = "tmp") -> str:
    """The temporary name of ``target``: host, process and target name, so a later run
    can tell a dead run's leftovers from a live one's."""
    return f".ferclean-{kind}-{_HOST}.{os.getpid()}@{target.name}"


def temp_prefix(target: PathLike) -> str:
    """Prefix for a temporary sibling of ``target`` (``tempfile`` adds a random tail).

    Examples
    --------
    >>> temp_prefix("out/d.csv").startswith(".ferclean-tmp-")
    True
    """
    return _stamp(Path(target)) + "."


# ---------------------------------------------------------------------- checks
def _relation(out: Path, other: Path) -> str | None:
    if out == other:
        return "is"
    if other in out.parents:
        return "lies inside"
    if out in other.parents:
        return "holds"
    try:
        if os.path.samefile(out, other):  # a hard link, a bind mount, another case
            return "is"
    except OSError:
        pass
    return None


def check_not_input(output: PathLike, inputs: Iterable[PathLike | None] = (), *,
                    outputs: Iterable[PathLike | None] = ()) -> None:
    """Raise :class:`OutputPathError` if ``output`` is, lies inside or holds an input.

    ``outputs`` are the command's other outputs: ``output`` may not be one of them or lie
    inside (or hold) one either.

    Examples
    --------
    >>> check_not_input("out.csv", ["in.csv"])
    >>> check_not_input("in.csv", ["in.csv"])
    Traceback (most recent call last):
    ...
    ferclean._outputs.OutputPathError: refusing to write in.csv: it is an input of this command
    >>> check_not_input("c/plan.json", [], outputs=["c"])
    Traceback (most recent call last):
    ...
    ferclean._outputs.OutputPathError: refusing to write c/plan.json: it lies inside c, \
another output of this command
    """
    out = Path(output).resolve()
    for items, role in ((inputs, "an input of this command"),
                        (outputs, "another output of this command")):
        for item in items:
            if item is None or str(item) == "":
                continue
            how = _relation(out, Path(item).resolve())
            if how == "is":
                raise OutputPathError(f"refusing to write {display_path(output)}: it is {role}")
            if how:
                raise OutputPathError(f"refusing to write {display_path(output)}: it {how} "
                                      f"{display_path(item)}, {role}")


def _entries(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except PermissionError:
        raise OutputError(f"cannot write {display_path(folder, folder=True)}: permission "
                          "denied (the folder cannot be listed)") from None


def _ours(entries: list[str], known: Iterable[str]) -> bool:
    """Whether a folder with these entries is a ferclean output."""
    if MARKER in entries:
        return True
    known = tuple(known)
    rest = [e for e in entries if not e.startswith((_TMP, _OLD))]
    return bool(known) and all(any(fnmatch.fnmatchcase(e, k) for k in known) for e in rest)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except PermissionError:
        raise OutputError(f"cannot write {display_path(path)}: permission denied") from None


def check_output(
    path: PathLike,
    *,
    folder: bool,
    inputs: Iterable[PathLike | None] = (),
    outputs: Iterable[PathLike | None] = (),
    overwrite: bool = False,
    known: Iterable[str] = (),
    resume: bool = False,
) -> bool:
    """Raise unless ``path`` may be written; True when an existing output will be replaced.

    Parameters
    ----------
    path : path-like
    folder : bool
        Whether the output is a folder (else a file).
    inputs, outputs : paths
        The command's inputs, and its other outputs (see :func:`check_not_input`).
    overwrite : bool, default=False
        Whether the user allowed replacing an existing output (``--overwrite``).
    known : names or glob patterns
        Entries of this kind of output folder, to recognise one written before
        :data:`MARKER` existed.
    resume : bool, default=False
        An existing output folder of ferclean's is written into in place (the
        benchmark resumes its runs): allowed without ``overwrite``.

    Raises
    ------
    OutputPathError
        ``path`` is an input (or inside one, or holds one), or another output.
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    OutputError
        A file where a folder is wanted (or the reverse), or a non-empty folder that
        ferclean did not write (whatever ``overwrite`` says).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_output(d / "new", folder=True)
    False
    >>> _ = (d / "mine.txt").write_text("user's notes")
    >>> check_output(d, folder=True, overwrite=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ferclean._outputs.OutputError: refusing to replace .../: a non-empty folder that ...
    """
    target = Path(path)
    check_not_input(target, inputs, outputs=outputs)
    if not os.path.lexists(target):  # a broken link counts: it would be replaced
        return False
    shown = display_path(target, folder=folder)
    if folder:
        if not _is_dir(target):
            raise OutputError(f"cannot write the folder {shown}: a file of that name exists "
                              "(choose another output folder)")
        entries = _entries(target)
        if not entries:
            return False
        if not _ours(entries, known):
            raise OutputError(
                f"refusing to replace {shown}: a non-empty folder that ferclean did not "
                f"write (it holds no {MARKER}); not even --overwrite replaces it: remove "
                "it yourself or choose another output folder")
        if resume:
            return False
        if not overwrite:
            raise OutputExistsError(f"{shown} exists (an earlier ferclean output); pass "
                                    "--overwrite (overwrite=True) to replace it")
        return True
    if _is_dir(target):
        raise OutputError(f"cannot write the file {shown}: it is a folder (choose another "
                          "output file)")
    if not overwrite:
        raise OutputExistsError(f"{shown} exists; pass --overwrite (overwrite=True) to "
                                "replace it")
    return True


# ---------------------------------------------------------------------- errors
def _ours_to_write(name: str | bytes | None, target: Path, places: Iterable[Path]) -> bool:
    """Whether an error's file is the output's: the target or a place (or inside them),
    the folder it goes in, or a temporary sibling; not an input that lies beside it."""
    if name is None:
        return True
    try:
        path = Path(os.fsdecode(name)).resolve()
    except (OSError, ValueError):
        return False
    parent = target.resolve().parent
    if path == parent or (path.parent == parent and path.name.startswith((_TMP, _OLD))):
        return True
    return any(path == p or p in path.parents for p in (target.resolve(), *places))


@contextmanager
def _write_errors(target: Path, *places: Path) -> Iterator[None]:
    """Turn a full disk, or a refused write at the output, into one :class:`OutputError`.

    Errors about other files (an input that cannot be read) pass unchanged.
    """
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        if target.name.startswith(_TMP):
            raise  # written inside another output's temporary folder: that guard names it
        shown = display_path(target)
        if exc.errno in _NO_SPACE:
            raise OutputError(f"cannot write {shown}: no space left on the device (disk "
                              "full); nothing was replaced") from exc
        where = [p.resolve() for p in places]
        if exc.errno in _DENIED and _ours_to_write(exc.filename, target, where):
            raise OutputError(f"cannot write {shown}: permission denied"
                              + (f" ({display_path(os.fsdecode(exc.filename))})"
                                 if exc.filename else "")) from exc
        raise


def _prepare_parent(target: Path) -> Path:
    parent = target.parent
    with _write_errors(target):
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise OutputError(f"cannot write {display_path(target)}: {display_path(parent)} "
                              "is not a folder") from None
    clear_stale(parent)
    return parent


# ---------------------------------------------------------------------- stale temps
def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill would terminate it: keep everything
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or we cannot tell
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clear_stale(folder: PathLike) -> list[str]:
    """Remove what dead ferclean runs left in ``folder``; returns the names cleared.

    Temporary files and folders of processes that no longer run on this host go; an old
    output a dead run had set aside (``.ferclean-old-*``) is moved back into place if
    nothing replaced it, else removed. Leftovers of a live run, of another host, or of
    a ferclean too old to stamp its temporary names are left alone (the latter are
    reported). Each call logs one line on ``ferclean.outputs`` when it found anything.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> dead = d / f".ferclean-tmp-{_HOST}.999999999@out.x1"
    >>> dead.mkdir()
    >>> clear_stale(d), dead.exists()
    (['.ferclean-tmp-...@out.x1'], False)
    """
    folder = Path(folder)
    try:
        names = [n for n in os.listdir(folder) if n.startswith((_TMP, _OLD))]
    except OSError:
        return []
    cleared, restored, unstamped = [], [], []
    for name in sorted(names):
        match = _STAMPED.match(name)
        if match is None:
            unstamped.append(name)
            continue
        kind, host, pid, rest = match.groups()
        if host != _HOST or _alive(int(pid)):
            continue
        path = folder / name
        try:
            if kind == "old" and not os.path.lexists(folder / rest):
                os.rename(path, folder / rest)  # its replacement never arrived
                restored.append(rest)
                continue
            _remove(path)
        except OSError:
            continue
        cleared.append(f".ferclean-{kind}-...@{rest}")
    if cleared:
        logger.info("removed %d temporary file(s) left in %s by ferclean runs that died: %s",
                    len(cleared), display_path(folder, folder=True), ", ".join(cleared[:3])
                    + (" ..." if len(cleared) > 3 else ""))
    if restored:
        logger.info("moved back %s in %s: a ferclean run that died had set it aside",
                    ", ".join(restored), display_path(folder, folder=True))
    if unstamped:
        logger.info("%s holds %d temporary file(s) of an older ferclean (%s...); remove them "
                    "when no ferclean run writes there", display_path(folder, folder=True),
                    len(unstamped), unstamped[0][:40])
    return cleared + restored


# ---------------------------------------------------------------------- writing
def write_marker(folder: PathLike, what: str) -> Path:
    """Write :data:`MARKER` into ``folder`` (the same bytes for the same ``what``).

    :func:`output_dir` does this when it commits; a writer that lists or checksums its
    folder's files (a release's ``SHA256SUMS``) writes it first, to include it.

    Examples
    --------
    >>> import tempfile
    >>> write_marker(tempfile.mkdtemp(), "example").read_text()
    '{"written_by": "ferclean", "what": "example"}\\n'
    """
    path = Path(folder) / MARKER
    path.write_text(json.dumps({"written_by": "ferclean", "what": what}) + "\n")
    return path


def _appeared(target: Path, folder: bool) -> OutputExistsError:
    return OutputExistsError(
        f"{display_path(target, folder=folder)} appeared while this run was writing it "
        "(another ferclean run with the same output?); nothing was replaced: pass "
        "--overwrite (overwrite=True) to replace it")


def _commit_file(tmp: Path, target: Path, *, overwrite: bool) -> None:
    """Move ``tmp`` to ``target``, checking again that nothing is replaced unasked."""
    if _is_dir(target):
        raise OutputError(f"cannot write the file {display_path(target)}: a folder of that "
                          "name appeared meanwhile")
    if not overwrite:
        try:
            os.link(tmp, target)  # fails if target exists: atomic no-replace
        except FileExistsError:
            raise _appeared(target, False) from None
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            # no hard links on this file system: a rename, checked just before
            if os.path.lexists(target):
                raise _appeared(target, False) from None
            os.replace(tmp, target)
        else:
            tmp.unlink()
        return
    existed = os.path.lexists(target)
    os.replace(tmp, target)
    if existed:
        logger.info("replaced %s", display_path(target))


def _commit_dir(tmp: Path, target: Path, *, overwrite: bool, known: Iterable[str],
                what: str) -> None:
    """Move folder ``tmp`` to ``target``, checking again that nothing is replaced unasked."""
    if not os.path.lexists(target):
        try:
            os.rename(tmp, target)  # never lands on a non-empty folder
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
    if target.is_dir() and not target.is_symlink() and not _entries(target):
        try:
            target.rmdir()  # empty: nothing to lose
            os.rename(tmp, target)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOENT):
                raise
    if not overwrite:
        raise _appeared(target, True)
    if not target.is_dir() or not _ours(_entries(target), known):
        raise OutputError(f"refusing to replace {display_path(target, folder=True)}: it is "
                          "not a ferclean output (it changed while this run was writing)")
    old = target.with_name(_stamp(target, "old"))
    if os.path.lexists(old):
        _remove(old)
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    _remove(old)
    logger.info("replaced %s, an earlier %s", display_path(target, folder=True), what)


@contextmanager
def output_file(
    path: PathLike,
    *,
    inputs: Iterable[PathLike | None] = (),
    outputs: Iterable[PathLike | None] = (),
    overwrite: bool = False,
) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``path`` (see the rules above).

    The temporary file keeps ``path``'s suffix, so writers that choose a form by suffix
    work on it.

    Raises
    ------
    OutputPathError, OutputExistsError, OutputError
        As :func:`check_output`, before anything is written and again at the final
        rename; :class:`OutputError` also when the disk is full or writing is denied.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with output_file(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("1")
    >>> with output_file(d / "a.txt") as tmp:  # doctest: +ELLIPSIS
    ...     _ = tmp.write_text("2")
    Traceback (most recent call last):
    ...
    ferclean._outputs.OutputExistsError: .../a.txt exists; pass --overwrite ...
    >>> [p.name for p in d.iterdir()], (d / "a.txt").read_text()
    (['a.txt'], '1')
    """
    target = Path(path)
    inputs, outputs = tuple(inputs), tuple(outputs)
    check_output(target, folder=False, inputs=inputs, outputs=outputs, overwrite=overwrite)
    parent = _prepare_parent(target)
    with _write_errors(target):
        fd, name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=target.suffix,
                                    dir=parent)
    os.close(fd)
    tmp = Path(name)
    # mkstemp makes 0600 files; outputs should get the permissions a plain open() gives
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with _write_errors(target, tmp):
            yield tmp
            check_not_input(target, inputs, outputs=outputs)
            _commit_file(tmp, target, overwrite=overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def output_dir(
    path: PathLike,
    *,
    what: str,
    inputs: Iterable[PathLike | None] = (),
    outputs: Iterable[PathLike | None] = (),
    overwrite: bool = False,
    known: Iterable[str] = (),
) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces ``path`` as a unit.

    The folder gets :data:`MARKER` (saying ``what`` it is), so a later run recognises it.

    Parameters
    ----------
    path : path-like
    what : str
        What the folder is, for the marker and messages (``"ferclean audit"``).
    inputs, outputs, overwrite, known
        As for :func:`check_output`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with output_dir(d / "out", what="example") as tmp:
    ...     _ = (tmp / "a.txt").write_text("1")
    >>> sorted(p.name for p in (d / "out").iterdir())
    ['.ferclean-output', 'a.txt']
    >>> with output_dir(d / "out", what="example", overwrite=True) as tmp:
    ...     _ = (tmp / "b.txt").write_text("2")
    >>> sorted(p.name for p in (d / "out").iterdir()), [p.name for p in d.iterdir()]
    (['.ferclean-output', 'b.txt'], ['out'])
    """
    target = Path(path)
    inputs, outputs, known = tuple(inputs), tuple(outputs), tuple(known)
    check_output(target, folder=True, inputs=inputs, outputs=outputs, overwrite=overwrite,
                 known=known)
    parent = _prepare_parent(target)
    with _write_errors(target):
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    try:
        with _write_errors(target, tmp):
            yield tmp
            write_marker(tmp, what)
            check_not_input(target, inputs, outputs=outputs)
            _commit_dir(tmp, target, overwrite=overwrite, known=known, what=what)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def claim_dir(
    path: PathLike,
    *,
    what: str,
    inputs: Iterable[PathLike | None] = (),
    outputs: Iterable[PathLike | None] = (),
    overwrite: bool = False,
    known: Iterable[str] = (),
    resume: bool = False,
) -> bool:
    """Make ``path`` an output folder written in place: check it, create it, mark it.

    For outputs that must be on disk while they grow (a training run's best checkpoint
    so far, the benchmark's finished runs). Returns True when an earlier output is to be
    replaced (the caller then clears its files), which is logged.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> claim_dir(d / "run", what="example"), (d / "run" / MARKER).exists()
    (False, True)
    >>> claim_dir(d / "run", what="example", resume=True)
    False
    """
    target = Path(path)
    replacing = check_output(target, folder=True, inputs=inputs, outputs=outputs,
                             overwrite=overwrite, known=known, resume=resume)
    _prepare_parent(target)
    with _write_errors(target):
        target.mkdir(exist_ok=True)
        if not (target / MARKER).exists():
            write_marker(target, what)
    if replacing:
        logger.info("replacing %s, an earlier %s", display_path(target, folder=True), what)
    return replacing
