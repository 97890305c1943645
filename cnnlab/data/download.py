"""Downloads that leave either a verified file or nothing.

A download streams into a temporary file beside its target (same folder, so the final rename
is atomic), hashing as it goes; only when the checksum matches is the file renamed into place.
A failed or corrupt download removes its temporary file and tries the next mirror. When every
URL fails, one :class:`~cnnlab.errors.RunError` line names each URL and what went wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cnnlab.errors import RunError

log = logging.getLogger("cnnlab.data")

TIMEOUT_S = 30.0  # per connection attempt and per read: a stalled mirror fails, the next is tried
CHUNK = 1 << 20  # bytes read at a time


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest (``"md5"``, ``"sha256"``) of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch(urls: Sequence[str], dest: Path, md5: str, timeout: float = TIMEOUT_S) -> Path:
    """Download ``dest`` from the first of ``urls`` whose content has this ``md5``.

    Returns ``dest``. Raises RunError naming every URL tried and why it failed; then no file
    (neither ``dest`` nor a temporary one) is left behind.
    """
    made = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]  # deepest first
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            got = _stream(url, dest, md5, timeout)
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts are OSErrors
            failures.append(f"{url} ({_reason(exc)})")
            continue
        if got is not None:
            failures.append(f"{url} (md5 {got}, expected {md5}: corrupt download, discarded)")
            continue
        return dest
    for folder in made:  # leave no trace: the folders this call made, if still empty
        with contextlib.suppress(OSError):
            folder.rmdir()
    raise RunError(f"could not download {dest.name} from {', '.join(failures)}")


def _stream(url: str, dest: Path, md5: str, timeout: float) -> str | None:
    """Stream ``url`` to a temp file beside ``dest``; rename it there if its md5 matches.

    Returns None on success, or the md5 that did not match (the temp file is removed).
    """
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        log.info("downloading %s", url)
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as response,
            _progress(dest.name, response.headers.get("Content-Length")) as advance,
        ):
            while block := response.read(CHUNK):
                out.write(block)
                digest.update(block)
                advance(len(block))
        if digest.hexdigest() != md5:
            return digest.hexdigest()
        os.replace(tmp, dest)
        log.info("verified md5 %s; saved %s", md5, dest)
        return None
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _progress(name: str, length: str | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr for one download; yields ``advance(nbytes)``."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        total = int(length) if length and length.isdigit() else None
        task = progress.add_task(name, total=total)
        yield lambda n: progress.advance(task, n)


def _reason(exc: BaseException) -> str:
    """A short reason for a failed attempt: the HTTP status or the underlying error."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
