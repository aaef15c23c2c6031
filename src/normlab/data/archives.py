"""Reading files that come from elsewhere without running code from them.

Three doors a downloaded data set could open, and how each is shut:

* **Pickles** (the official CIFAR-10 python batches). ``pickle.load`` calls
  whatever callable the file names, so a tampered batch could run
  ``os.system``. :func:`restricted_pickle_load` uses an unpickler whose
  ``find_class`` answers only from a fixed table of what the official batches
  hold (numpy's array reconstruction, ``numpy.ndarray``, ``numpy.dtype``);
  every other global is an error naming the file and the global. Plain
  containers, strings, bytes and numbers need no global at all.
* **Tar archives** are extracted with tar's ``data`` filter (PEP 706: no
  absolute names, no ``..``, no links leaving the folder, no device files);
  on a Python without it, an explicit check of every member does the same.
* **Zip archives** are read member by member; :func:`check_member_name`
  refuses absolute names, drive letters and ``..`` parts before a member is
  used.

One data file may come plain, gzipped or inside a zip (:func:`open_binary`,
compression told by the content); ``archive.zip:member`` names a member of a
larger zip everywhere a data file is asked for (:func:`split_member`).

Downloads go to a temporary file beside the target and are renamed into place
only after their MD5 matches, so a broken download never looks complete.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import posixpath
import tarfile
import urllib.request
import zipfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from normlab.files import atomic_write_with

__all__ = [
    "UnsafeArchiveError",
    "RestrictedUnpickler",
    "restricted_pickle_load",
    "check_member_name",
    "safe_extract_tar",
    "split_member",
    "data_members",
    "open_binary",
    "read_bytes",
    "md5sum",
    "download",
]


class UnsafeArchiveError(ValueError):
    """A file asked for something a data file never needs (code, a path outside its folder)."""


# --------------------------------------------------------------------------- pickles


def _numpy_reconstruct() -> Callable:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 writes ``bytes`` into protocol-2 pickles, latin-1 only.

    Any other codec is refused: codec lookup imports modules by name.
    """
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafeArchiveError(f"_codecs.encode is admitted only as encode(str, 'latin1'), got encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    reconstruct = _numpy_reconstruct()
    return {
        # What ndarray.__reduce__ names in protocol <= 4 pickles (numpy 1.x and 2.x spellings).
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes objects into protocol-2 pickles as _codecs.encode(str, 'latin1').
        ("_codecs", "encode"): _latin1_encode,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals the official CIFAR-10 batches use.

    Nothing is imported by name: ``find_class`` looks the (module, name) pair
    up in a fixed table and raises :class:`UnsafeArchiveError` for anything
    else, so a pickle whose ``__reduce__`` names ``os.system``, ``eval`` or
    ``subprocess.Popen`` stops before that callable exists.
    """

    def __init__(self, file: BinaryIO, *, source: str = "<pickle>", encoding: str = "bytes") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in self._allowed)
            raise UnsafeArchiveError(
                f"{self.source}: refused to load the pickled global {module}.{name}; a data batch holds only "
                f"arrays, lists, dicts, strings, bytes and numbers (admitted: {allowed}). "
                f"The file may have been tampered with: do not load it with plain pickle."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeArchiveError(f"{self.source}: refused a persistent id in the pickle; data batches have none")


def restricted_pickle_load(data: bytes | BinaryIO, source: str = "<pickle>") -> Any:
    """Unpickle ``data`` (bytes or a binary file) with :class:`RestrictedUnpickler`.

    Keys keep the ``encoding="bytes"`` form of the official batches (``b"data"``).
    Any failure is a ``ValueError`` naming ``source``.
    """
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        return RestrictedUnpickler(f, source=source).load()
    except UnsafeArchiveError:
        raise
    except Exception as e:  # truncated file, not a pickle, bad numpy state
        raise ValueError(f"{source}: not a readable python pickle ({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------- archive members


def check_member_name(name: str, archive: str | Path) -> str:
    """Return the member name as a relative posix path, or raise if it could leave its folder.

    Refused: absolute names (``/x``, ``\\x``), drive letters (``C:x``), and any
    ``..`` part (after turning backslashes into slashes, as Windows tools would).
    """
    norm = name.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if norm.startswith("/") or (len(norm) >= 2 and norm[1] == ":") or ".." in parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} points outside the archive's folder (absolute path or '..'); "
            f"refusing to read this archive"
        )
    return posixpath.join(*parts) if parts else ""


def _check_tar_member(member: tarfile.TarInfo, dest: Path, archive: Path) -> None:
    """The checks of tar's ``data`` filter, for Pythons that lack it (< 3.8.17 / 3.11.4)."""
    check_member_name(member.name, archive)
    if member.issym() or member.islnk():
        target = member.linkname
        base = posixpath.dirname(member.name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target.replace("\\", "/")))
        if target.startswith(("/", "\\")) or resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} links outside the archive ({target!r})")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device, fifo or other special file")
    if not (dest / member.name).resolve().is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} would be written outside {dest}")


def safe_extract_tar(archive: str | Path, dest: str | Path) -> Path:
    """Extract a (possibly compressed) tar archive into ``dest`` without path traversal.

    Uses tar's ``data`` filter where Python has it, else the same checks by
    hand, for every member before anything is written. A refused member is an
    :class:`UnsafeArchiveError` naming the archive and the member.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            for m in members:  # refuse the whole archive up front, whichever filter runs below
                check_member_name(m.name, archive)
            if hasattr(tarfile, "data_filter"):
                try:
                    tf.extractall(dest, members=members, filter="data")
                except tarfile.FilterError as e:
                    raise UnsafeArchiveError(f"{archive}: refusing to extract: {e}") from e
            else:  # Pythons before 3.8.17 / 3.9.17 / 3.10.12 / 3.11.4
                for m in members:
                    _check_tar_member(m, dest, archive)
                tf.extractall(dest, members=members)
    except tarfile.TarError as e:
        raise ValueError(f"{archive}: not a readable tar archive ({e})") from e
    return dest


# --------------------------------------------------------------------------- compressed files and zip members


def split_member(path: str | Path) -> tuple[Path, str | None]:
    """``"a/b.zip:inner.txt"`` -> (Path("a/b.zip"), "inner.txt"); otherwise (Path(path), None).

    The one reading of the ``archive.zip:member`` syntax: the last ``.zip:``, in any case
    (``B.ZIP:inner.txt``), unless the whole path names an existing file (a file may have
    ``.zip:`` in its name).
    """
    s = str(path)
    cut = s.lower().rfind(".zip:")
    if cut >= 0 and not Path(s).exists():
        return Path(s[: cut + 4]), s[cut + 5 :]
    return Path(s), None


def data_members(zf: zipfile.ZipFile) -> list[str]:
    """Members that hold data: no folders, no macOS resource forks, no dotfiles."""
    return [
        i.filename
        for i in zf.infolist()
        if not i.is_dir()
        and not i.filename.startswith("__MACOSX/")
        and not Path(i.filename).name.startswith(".")
    ]


@contextmanager
def open_binary(path: str | Path, *, what: str = "data") -> Iterator[tuple[BinaryIO, str]]:
    """Open a plain, ``.gz`` or ``.zip`` file for reading bytes; yields (stream, name for messages).

    Compression is detected from the content, not the name. A ``.zip`` must
    hold a single data member, or the member is named as ``path.zip:member``.
    The name is ``path`` or ``path.zip:member``, so that an error about a
    line points at the member inside the archive.
    """
    file, member = split_member(path)
    if not file.is_file():
        raise ValueError(f"expected a {what} file, got {str(path)!r}: no such file")
    name = str(file)
    try:
        with ExitStack() as stack:
            with open(file, "rb") as f:
                magic = f.read(4)
            if member is not None or magic in (b"PK\x03\x04", b"PK\x05\x06"):
                zf = stack.enter_context(zipfile.ZipFile(file))
                if member is None:
                    members = data_members(zf)
                    if len(members) != 1:
                        raise ValueError(
                            f"{file}: expected a zip with a single {what} member (or one named as "
                            f"'{file}:MEMBER'), got {len(members)} members: {members[:10]}"
                        )
                    member = members[0]
                try:
                    stream = stack.enter_context(zf.open(member))
                except KeyError:
                    raise ValueError(
                        f"{file}: no member {member!r} in the zip; members: {data_members(zf)[:10]}"
                    ) from None
                name = f"{file}:{member}"
            elif magic[:2] == b"\x1f\x8b":
                stream = stack.enter_context(gzip.open(file, "rb"))
            else:
                stream = stack.enter_context(open(file, "rb"))
            yield stream, name  # type: ignore[misc]
    except (OSError, EOFError, zipfile.BadZipFile) as e:  # a truncated or corrupt archive
        raise ValueError(f"{name}: expected a readable {what} file, got a broken one ({e})") from None


def read_bytes(path: str | Path, *, what: str = "data") -> tuple[bytes, str]:
    """All bytes of a plain, ``.gz`` or ``.zip`` file (see :func:`open_binary`), and its name."""
    with open_binary(path, what=what) as (stream, name):
        return stream.read(), name


# --------------------------------------------------------------------------- downloads


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | Path, md5: str, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` and check its MD5; ``dest`` appears only if the sum matches.

    Raises ``OSError`` (network, disk) or ``ValueError`` (MD5 mismatch); a
    partial or corrupt download is deleted.
    """
    h = hashlib.md5()

    def fetch(out) -> None:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                h.update(block)
                out.write(block)
        if h.hexdigest() != md5.lower():
            raise ValueError(f"{url}: downloaded file has MD5 {h.hexdigest()}, expected {md5}; deleted it")

    atomic_write_with(dest, fetch, "wb")
    return Path(dest)
