"""Atomic output: write to a temporary sibling, then rename into place.

A crash midway leaves only a ``.ferclean-tmp-*`` sibling behind, never a file or folder
that looks complete. Outputs never replace a command's input.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def refuse_input_overwrite(output: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """Raise if ``output`` is (or lies inside, or contains) one of ``inputs``.

    Examples
    --------
    >>> refuse_input_overwrite("out.csv", "in.csv")
    >>> refuse_input_overwrite("in.csv", "in.csv")
    Traceback (most recent call last):
    ...
    ValueError: refusing to write in.csv: it is an input of this command
    """
    out = Path(output).resolve()
    for item in inputs:
        if item is None:
            continue
        inp = Path(item).resolve()
        if out == inp or inp in out.parents or out in inp.parents:
            raise ValueError(f"refusing to write {output}: it is an input of this command")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".ferclean-tmp-{target.name}.", dir=target.parent)
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
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".ferclean-tmp-{target.name}.", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".ferclean-old-{target.name}.{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
