"""Atomic output: write to a temporary sibling, then rename into place.

A crash midway leaves only a ``.ferclean-tmp-*`` sibling behind, never a file or folder
that looks complete; its name says which process left it, so the next run clears it
(:func:`ferclean._outputs.clear_stale`). These are the building blocks for the files
*inside* an output; whether an output may be written at all (never an input, never a
thing ferclean did not write) is decided by :mod:`ferclean._outputs`, the one guard every
output goes through.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ferclean._outputs import OutputExistsError, _stamp, _umask, check_not_input, temp_prefix


def refuse_input_overwrite(output: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """Raise if ``output`` is (or lies inside, or contains) one of ``inputs``.

    Examples
    --------
    >>> refuse_input_overwrite("out.csv", "in.csv")
    >>> refuse_input_overwrite("in.csv", "in.csv")
    Traceback (most recent call last):
    ...
    ferclean._outputs.OutputPathError: refusing to write in.csv: it is an input of this command
    """
    check_not_input(output, inputs)


@contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_file(d / "x.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "x.txt").read_text()
    'hello'
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target), dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes 0600 files; outputs should get the permissions a plain open() gives
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; move it to ``path`` on success.

    With ``overwrite=True`` an existing folder at ``path`` is replaced only after the new
    one is complete.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_dir(d / "out") as tmp:
    ...     _ = (tmp / "a.txt").write_text("1")
    >>> sorted(p.name for p in (d / "out").iterdir())
    ['a.txt']
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    try:
        yield tmp
        if target.exists():
            old = target.with_name(_stamp(target, "old"))
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
