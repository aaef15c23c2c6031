"""Image classification data: CIFAR-10 (official python batches) and image folders.

``load_images(data)`` accepts

* ``"cifar10"``: the official ``cifar-10-python.tar.gz`` (or its extracted
  ``cifar-10-batches-py/``) in the data folder, downloaded with an MD5 check
  when absent;
* a path to that archive or folder, or to an image folder
  (``train/<class>/<image>``, ``test/<class>/<image>``, at the top or under one
  top-level folder such as ``cifar10-jpeg/``), as a folder, a ``.zip`` or a tar.

Everything is decoded once into uint8 NCHW arrays and cached as ``.npz`` in
:func:`cache_dir`, keyed by the source's path, size and modification time, so
later loads take a fraction of a second. Pickles go through the restricted
unpickler of :mod:`normlab.data.archives`; archives never write outside their
folder.

Measured on a 2-core CPU shared with other jobs (load average ~7.5; Pillow 13,
numpy 2.4, torch 2.13): ``../shared/data/cifar10-jpeg.zip`` (60,000 JPEGs)
decodes in 16 s of CPU time the first time (48 s wall under that load), and
loads from the cache in 0.3-1.2 s.

Splitting, statistics and training batches of the decoded arrays:
:mod:`normlab.data.image_batches`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from normlab.data import archives
from normlab.files import atomic_write_with

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
# Pillow plugins tried, in order, for those suffixes (JPEG first: the common case).
_PIL_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "PPM", "TIFF", "WEBP")

# Bump when the decoded arrays would differ for the same input (invalidates old caches).
_CACHE_VERSION = 1


@dataclass
class ImageDataset:
    """A decoded image classification data set.

    ``train_x``/``test_x``: uint8, shape (N, 3, H, W); ``train_y``/``test_y``:
    int64, shape (N,), indices into ``classes``.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


def default_data_dir() -> Path:
    """Where ``--data cifar10`` looks for (and downloads) the archive: ``$NORMLAB_DATA`` or ``~/.cache/normlab/data``."""
    env = os.environ.get("NORMLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "normlab" / "data"


def cache_dir() -> Path:
    """Where decoded arrays are cached: ``$NORMLAB_CACHE`` or ``~/.cache/normlab/cache``."""
    env = os.environ.get("NORMLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "normlab" / "cache"


# --------------------------------------------------------------------------- entry point


def load_images(data: str, data_dir: Path | None = None, download: bool = True) -> ImageDataset:
    """Load ``data`` (``"cifar10"`` or a path) as an :class:`ImageDataset`; see the module docstring."""
    if not isinstance(data, (str, os.PathLike)) or not str(data):
        raise ValueError(f"expected data to be 'cifar10' or a path, got {data!r}")
    if str(data) == "cifar10":
        where = Path(data_dir) if data_dir is not None else default_data_dir()
        if where.exists() and not where.is_dir():
            flag = "--data-dir" if data_dir is not None else "NORMLAB_DATA (the default --data-dir)"
            raise ValueError(f"{flag} {where}: expected a folder to find or download CIFAR-10 in, got a file")
        path = _find_or_download_cifar10(where, download)
    else:
        path = Path(data).expanduser()
        if path.is_dir() and (path / CIFAR10_FOLDER).is_dir():  # a data folder holding the official set
            path = path / CIFAR10_FOLDER
        elif path.is_dir() and (path / CIFAR10_ARCHIVE).is_file():
            path = path / CIFAR10_ARCHIVE
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no such file or folder; expected 'cifar10', the official cifar-10-python.tar.gz or its "
                f"extracted folder, or an image folder (train/<class>/<image>, test/<class>/<image>) or a .zip of one"
            )
    return _load_path(path)


def _find_or_download_cifar10(data_dir: Path, download: bool) -> Path:
    folder, archive = data_dir / CIFAR10_FOLDER, data_dir / CIFAR10_ARCHIVE
    if folder.is_dir():
        return folder
    if archive.is_file():
        return archive
    if download:
        try:
            return archives.download(CIFAR10_URL, archive, CIFAR10_MD5)
        except (OSError, ValueError) as e:
            reason = f"downloading it from {CIFAR10_URL} failed ({type(e).__name__}: {e})"
    else:
        reason = "downloading is turned off"
    raise FileNotFoundError(
        f"CIFAR-10 was not found in {data_dir} and {reason}. Put the official python-format archive at "
        f"{archive} (from {CIFAR10_URL}, MD5 {CIFAR10_MD5}) or its extracted folder at {folder}/, "
        f"or point --data-dir (or the environment variable NORMLAB_DATA) at the folder that holds them. "
        f"An image-folder copy (train/<class>/<image>, test/<class>/<image>), or a .zip of one, can be given "
        f"directly as --data PATH."
    )


# --------------------------------------------------------------------------- the cache


def _fingerprint(path: Path) -> str:
    """Changes whenever the source may have changed: path, sizes and mtimes (of every file in a folder)."""
    path = path.resolve()
    h = hashlib.sha256(json.dumps([_CACHE_VERSION, str(path)]).encode())
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                st = os.stat(os.path.join(root, name))
                h.update(f"{os.path.relpath(os.path.join(root, name), path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        st = path.stat()
        h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _cache_path(path: Path) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.resolve().name) or "data"
    return cache_dir() / f"{stem}-{_fingerprint(path)}.npz"


def _read_cache(file: Path) -> ImageDataset | None:
    try:
        with np.load(file, allow_pickle=False) as z:
            ds = ImageDataset(
                train_x=z["train_x"], train_y=z["train_y"], test_x=z["test_x"], test_y=z["test_y"],
                classes=[str(c) for c in z["classes"]], source=str(z["source"]),
            )
        _check_dataset(ds, str(file))
        return ds
    except Exception:  # a torn or foreign cache file is rebuilt, never trusted
        return None


def _write_cache(file: Path, ds: ImageDataset) -> None:
    def write(f):
        np.savez(f, train_x=ds.train_x, train_y=ds.train_y, test_x=ds.test_x, test_y=ds.test_y,
                 classes=np.array(ds.classes, dtype=np.str_), source=np.array(ds.source, dtype=np.str_))

    atomic_write_with(file, write, "wb")


def _check_dataset(ds: ImageDataset, where: str) -> None:
    if len(ds.classes) < 2:
        raise ValueError(f"{where}: expected at least 2 classes to tell apart (a folder each under train/ and "
                         f"test/), got {len(ds.classes)}: {list(ds.classes)}")
    for split in ("train", "test"):
        x, y = getattr(ds, f"{split}_x"), getattr(ds, f"{split}_y")
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != 3 or y.dtype != np.int64 or y.shape != (len(x),):
            raise ValueError(f"{where}: bad {split} arrays {x.dtype}{x.shape}, {y.dtype}{y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= len(ds.classes)):
            raise ValueError(f"{where}: {split} labels outside 0..{len(ds.classes) - 1}")


def _load_path(path: Path) -> ImageDataset:
    cache = _cache_path(path)
    if cache.is_file() and (ds := _read_cache(cache)) is not None:
        return ds
    with _open_tree(path) as tree:
        ds = _decode_tree(tree)
    _check_dataset(ds, str(path))
    try:
        _write_cache(cache, ds)
    except OSError as e:  # a read-only or full cache folder slows the next load, nothing more
        warnings.warn(f"could not cache the decoded arrays at {cache} ({e}); set NORMLAB_CACHE to a writable folder")
    return ds


# --------------------------------------------------------------------------- sources as file trees


@dataclass
class _Tree:
    """The files of a folder or archive as relative posix names, with a reader and an error label per name."""

    label: str  # "image folder zip /x/y.zip", for messages and ImageDataset.source
    path: Path
    names: list[str]
    read: Callable[[str], bytes]
    where: Callable[[str], str]


def _ignored(name: str) -> bool:
    """Hidden files and macOS resource forks that zip tools add (``.DS_Store``, ``__MACOSX/``)."""
    return any(p.startswith(".") or p == "__MACOSX" for p in name.split("/"))


def _folder_tree(root: Path, label: str, where: Callable[[str], str] | None = None) -> _Tree:
    names = []
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for f in files:
            name = f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
            if not _ignored(name):
                names.append(name)
    return _Tree(label, root, sorted(names), lambda n: (root / n).read_bytes(),
                 where or (lambda n: str(root / n)))


@contextmanager
def _open_tree(path: Path) -> Iterator[_Tree]:
    if path.is_dir():
        yield _folder_tree(path, f"folder {path}")
    elif zipfile.is_zipfile(path):
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise ValueError(f"{path}: not a readable zip archive ({e})") from e
        with zf:
            infos = {}
            for info in zf.infolist():
                name = archives.check_member_name(info.filename, path)
                if not info.is_dir() and name and not _ignored(name):
                    infos[name] = info
            def read(n: str) -> bytes:
                try:
                    return zf.read(infos[n])
                except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:  # CRC, truncation, codec
                    raise ValueError(f"{path}: member {infos[n].filename}: cannot read it from the zip ({e})") from e

            yield _Tree(f"zip {path}", path, sorted(infos), read, lambda n: f"{path}: member {infos[n].filename}")
    elif tarfile.is_tarfile(path):
        cache_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".extract-", dir=cache_dir()) as tmp:
            archives.safe_extract_tar(path, tmp)
            yield _folder_tree(Path(tmp), f"tar {path}", lambda n: f"{path}: member {n}")
    else:
        raise ValueError(
            f"{path}: not a folder, zip or tar archive; expected the official cifar-10-python.tar.gz or its "
            f"extracted folder, or an image folder (train/<class>/<image>, test/<class>/<image>) or a .zip of one"
        )


def _decode_tree(tree: _Tree) -> ImageDataset:
    batch_dirs = sorted({n.rpartition("/")[0] for n in tree.names if n.rpartition("/")[2] == "test_batch"})
    if batch_dirs:
        if len(batch_dirs) > 1:
            raise ValueError(f"{tree.path}: more than one folder holds a test_batch ({', '.join(batch_dirs)})")
        return _decode_cifar_batches(tree, batch_dirs[0])
    return _decode_image_folder(tree, _image_folder_root(tree))


# --------------------------------------------------------------------------- official CIFAR-10 batches


def _key(k) -> str:
    return k.decode("latin1") if isinstance(k, bytes) else str(k)


def _read_pickle_dict(tree: _Tree, name: str, required: tuple[str, ...]) -> dict:
    where = tree.where(name)
    obj = archives.restricted_pickle_load(tree.read(name), source=where)
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a pickled dict with keys {', '.join(required)}, got {type(obj).__name__}")
    d = {_key(k): v for k, v in obj.items()}
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{where}: a CIFAR-10 batch must hold {', '.join(required)}; "
                         f"missing {', '.join(missing)} (found keys: {', '.join(sorted(d)) or 'none'})")
    return d


def _read_batch(tree: _Tree, name: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    where = tree.where(name)
    d = _read_pickle_dict(tree, name, ("data", "labels"))
    data, labels = d["data"], d["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{where}: 'data' must be a uint8 array of shape (N, 3072) (32x32 RGB, channel-major), got {desc}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        y = None
    if y is None or y.shape != (len(data),):
        raise ValueError(f"{where}: 'labels' must be a list of {len(data)} integers (one per row of 'data')")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{where}: labels must lie in 0..{num_classes - 1}, found {y.min()}..{y.max()}")
    return data.reshape(-1, 3, 32, 32), y  # shape: (N, 3, 32, 32)


def _decode_cifar_batches(tree: _Tree, root: str) -> ImageDataset:
    prefix = f"{root}/" if root else ""
    names = set(tree.names)
    train = [f"{prefix}data_batch_{i}" for i in range(1, 6)]
    missing = [n for n in train if n not in names]
    if missing:
        raise ValueError(f"{tree.path}: official CIFAR-10 batches are incomplete: missing {', '.join(missing)} "
                         f"(expected data_batch_1..data_batch_5 and test_batch together)")
    classes = CIFAR10_CLASSES
    meta = f"{prefix}batches.meta"
    if meta in names:
        d = _read_pickle_dict(tree, meta, ("label_names",))
        if not isinstance(d["label_names"], list) or not all(isinstance(c, (bytes, str)) for c in d["label_names"]):
            raise ValueError(f"{tree.where(meta)}: 'label_names' must be a list of strings")
        classes = [_key(c) for c in d["label_names"]]
    parts = [_read_batch(tree, n, len(classes)) for n in train]
    test_x, test_y = _read_batch(tree, f"{prefix}test_batch", len(classes))
    return ImageDataset(
        train_x=np.concatenate([p[0] for p in parts]), train_y=np.concatenate([p[1] for p in parts]),
        test_x=np.ascontiguousarray(test_x), test_y=test_y, classes=list(classes),
        source=f"CIFAR-10 python batches, {tree.label}" + (f" ({root}/)" if root else ""),
    )


# --------------------------------------------------------------------------- image folders


def _image_folder_root(tree: _Tree) -> str:
    tops = sorted({n.split("/")[0] for n in tree.names})
    if any(n.startswith("train/") for n in tree.names):
        return ""
    if len(tops) == 1 and any(n.startswith(f"{tops[0]}/train/") for n in tree.names):
        return tops[0]
    shown = ", ".join(tops[:10]) + (", ..." if len(tops) > 10 else "") if tops else "nothing"
    raise ValueError(
        f"{tree.path}: no train/ folder found; expected an image folder (train/<class>/<image> and "
        f"test/<class>/<image>, at the top or under one top-level folder) or the official CIFAR-10 batches "
        f"(data_batch_1..5, test_batch). Found at the top: {shown}"
    )


def _split_files(tree: _Tree, prefix: str, split: str) -> dict[str, list[str]]:
    start = f"{prefix}{split}/"
    by_class: dict[str, list[str]] = {}
    for n in tree.names:
        if not n.startswith(start):
            continue
        parts = n[len(start):].split("/")
        if len(parts) != 2:
            raise ValueError(f"{tree.where(n)}: expected {split}/<class>/<image>, "
                             f"found a file {'directly in' if len(parts) == 1 else 'nested below a class folder of'} {split}/")
        if not parts[1].lower().endswith(IMAGE_SUFFIXES):
            raise ValueError(f"{tree.where(n)}: not an image file; expected one of {', '.join(IMAGE_SUFFIXES)}")
        by_class.setdefault(parts[0], []).append(n)
    return by_class


def _decode_image_folder(tree: _Tree, root: str) -> ImageDataset:
    prefix = f"{root}/" if root else ""
    train, test = _split_files(tree, prefix, "train"), _split_files(tree, prefix, "test")
    if not test:
        raise ValueError(f"{tree.path}: no test/<class>/<image> files found beside {prefix}train/")
    if set(train) != set(test):
        only_train, only_test = sorted(set(train) - set(test)), sorted(set(test) - set(train))
        raise ValueError(f"{tree.path}: class folders differ between {prefix}train/ and {prefix}test/: "
                         f"only in train: {only_train or 'none'}; only in test: {only_test or 'none'}")
    classes = sorted(train)
    size: list[tuple[int, int] | str] = []  # [(width, height), first file], set by the first image
    train_x, train_y = _decode_split(tree, train, classes, size)
    test_x, test_y = _decode_split(tree, test, classes, size)
    w, h = size[0]
    return ImageDataset(train_x, train_y, test_x, test_y, classes,
                        source=f"image folder, {tree.label}" + (f" ({root}/)" if root else "") + f", {w}x{h} RGB")


def _decode_split(tree: _Tree, by_class: dict[str, list[str]], classes: list[str], size: list) -> tuple[np.ndarray, np.ndarray]:
    names = [n for c in classes for n in by_class[c]]
    y = np.concatenate([np.full(len(by_class[c]), i, dtype=np.int64) for i, c in enumerate(classes)])
    out = None
    for i, n in enumerate(names):
        img = _decode_image(tree, n, size)
        if out is None:
            out = np.empty((len(names), *img.shape), dtype=np.uint8)  # shape: (N, H, W, 3)
        out[i] = img
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), y  # shape: (N, 3, H, W)


def _decode_image(tree: _Tree, name: str, size: list) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(tree.read(name)), formats=_PIL_FORMATS) as im:
            if size and im.size != size[0]:
                raise ValueError(f"{tree.where(name)}: image is {im.size[0]}x{im.size[1]}, expected "
                                 f"{size[0][0]}x{size[0][1]} like the first image ({size[1]})")
            if im.mode != "RGB":
                im = im.convert("RGB")
            w, h = im.size
            # tobytes + frombuffer: ~15% faster than np.asarray(im) for 32x32 JPEGs.
            arr = np.frombuffer(im.tobytes(), dtype=np.uint8).reshape(h, w, 3)  # shape: (H, W, 3)
    except ValueError as e:
        if str(e).startswith(tree.where(name)):
            raise
        raise ValueError(f"{tree.where(name)}: cannot decode the image ({e})") from e
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        # PIL names the in-memory stream ("<_io.BytesIO object at 0x...>"); the member is named already.
        why = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(e))
        raise ValueError(f"{tree.where(name)}: cannot decode the image ({type(e).__name__}: {why}); "
                         f"expected a readable {', '.join(IMAGE_SUFFIXES)} file") from e
    if not size:
        size.extend([(arr.shape[1], arr.shape[0]), tree.where(name)])
    return arr
