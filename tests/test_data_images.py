"""normlab.data.images: CIFAR-10 batches, image folders, the cache, splits, stats and batches."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from normlab.data import archives, images
from normlab.data.image_batches import channel_stats, iterate_batches, num_batches, train_val_split
from normlab.data.images import CIFAR10_CLASSES, ImageDataset, load_images

PER_BATCH = 6  # images per synthetic official batch


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """Synthetic data sets are cached in the test's own folder, not the shared test cache."""
    d = tmp_path / "cache"
    monkeypatch.setenv("NORMLAB_CACHE", str(d))
    return d


# --------------------------------------------------------------------------- synthetic official CIFAR-10


def _official_batch(rng: np.random.Generator, n: int, name: str) -> dict:
    """A batch as the official files hold it: bytes keys, (n, 3072) uint8 data, a list of int labels."""
    return {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def make_official_folder(root: Path, seed: int = 0) -> tuple[Path, dict[str, dict]]:
    folder = root / images.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {f"data_batch_{i}": _official_batch(rng, PER_BATCH, f"training batch {i} of 5") for i in range(1, 6)}
    batches["test_batch"] = _official_batch(rng, PER_BATCH, "testing batch 1 of 1")
    for name, b in batches.items():
        (folder / name).write_bytes(pickle.dumps(b, protocol=2))
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder, batches


def make_tar(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return out


def check_official(ds: ImageDataset, batches: dict[str, dict]) -> None:
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    assert ds.train_x.shape == (5 * PER_BATCH, 3, 32, 32) and ds.train_x.dtype == np.uint8
    assert ds.test_x.shape == (PER_BATCH, 3, 32, 32)
    assert ds.train_y.dtype == np.int64 and ds.test_y.dtype == np.int64
    np.testing.assert_array_equal(ds.train_x, np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(ds.train_y, np.concatenate([b[b"labels"] for b in train]))
    np.testing.assert_array_equal(ds.test_x, batches["test_batch"][b"data"].reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(ds.test_y, batches["test_batch"][b"labels"])
    # Channel-major rows: the first 1024 values of a row are the red plane.
    np.testing.assert_array_equal(ds.train_x[0, 0].ravel(), train[0][b"data"][0, :1024])
    assert ds.classes == CIFAR10_CLASSES


def test_official_folder_loads(tmp_path, tmp_cache):
    folder, batches = make_official_folder(tmp_path)
    ds = load_images(str(folder))
    check_official(ds, batches)
    assert "CIFAR-10 python batches" in ds.source and str(folder) in ds.source


def test_official_tar_gz_loads(tmp_path, tmp_cache):
    folder, batches = make_official_folder(tmp_path / "src")
    tgz = make_tar(folder, tmp_path / images.CIFAR10_ARCHIVE)
    ds = load_images(str(tgz))
    check_official(ds, batches)
    assert "tar" in ds.source
    # The temporary extraction is gone; only the cache file remains.
    assert [p.suffix for p in tmp_cache.iterdir()] == [".npz"]


def test_cifar10_found_in_data_dir(tmp_path, tmp_cache):
    folder, batches = make_official_folder(tmp_path / "src")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    make_tar(folder, data_dir / images.CIFAR10_ARCHIVE)
    check_official(load_images("cifar10", data_dir=data_dir, download=False), batches)


def test_cifar10_data_dir_from_environment(tmp_path, tmp_cache, monkeypatch):
    folder, batches = make_official_folder(tmp_path / "data")
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "data"))
    assert images.default_data_dir() == tmp_path / "data"
    check_official(load_images("cifar10", download=False), batches)


def test_cifar10_download_checks_md5(tmp_path, tmp_cache, monkeypatch):
    folder, batches = make_official_folder(tmp_path / "src")
    tgz = make_tar(folder, tmp_path / "served.tar.gz")
    monkeypatch.setattr(images, "CIFAR10_URL", tgz.as_uri())
    monkeypatch.setattr(images, "CIFAR10_MD5", archives.md5sum(tgz))
    data_dir = tmp_path / "data"
    check_official(load_images("cifar10", data_dir=data_dir), batches)
    assert (data_dir / images.CIFAR10_ARCHIVE).read_bytes() == tgz.read_bytes()


def test_cifar10_download_bad_md5_is_clear_error(tmp_path, tmp_cache, monkeypatch):
    folder, _ = make_official_folder(tmp_path / "src")
    tgz = make_tar(folder, tmp_path / "served.tar.gz")
    monkeypatch.setattr(images, "CIFAR10_URL", tgz.as_uri())
    monkeypatch.setattr(images, "CIFAR10_MD5", "0" * 32)
    data_dir = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match=r"(?s)MD5 .* expected 0{32}.*Put the official"):
        load_images("cifar10", data_dir=data_dir)
    assert list(data_dir.iterdir()) == []  # no partial download left behind


def test_cifar10_missing_without_download_says_where_to_put_it(tmp_path, tmp_cache):
    data_dir = tmp_path / "nothing-here"
    with pytest.raises(FileNotFoundError) as e:
        load_images("cifar10", data_dir=data_dir, download=False)
    msg = str(e.value)
    assert "\n" not in msg  # one paragraph
    assert "downloading is turned off" in msg
    assert str(data_dir / "cifar-10-python.tar.gz") in msg
    assert str(data_dir / "cifar-10-batches-py") in msg
    assert "NORMLAB_DATA" in msg and "--data-dir" in msg and images.CIFAR10_MD5 in msg


def test_a_data_folder_holding_the_official_set_can_be_given_as_path(tmp_path, tmp_cache):
    folder, batches = make_official_folder(tmp_path / "src")
    (tmp_path / "data").mkdir()
    make_tar(folder, tmp_path / "data" / images.CIFAR10_ARCHIVE)
    check_official(load_images(str(tmp_path / "data")), batches)  # the archive inside it
    check_official(load_images(str(tmp_path / "src")), batches)  # the extracted folder inside it


def test_official_batch_without_data_key_is_clear_error(tmp_path, tmp_cache):
    folder, batches = make_official_folder(tmp_path)
    bad = dict(batches["data_batch_3"])
    del bad[b"data"]
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3: a CIFAR-10 batch must hold data, labels; missing data"):
        load_images(str(folder))


def test_official_batch_with_wrong_shapes_is_clear_error(tmp_path, tmp_cache):
    folder, batches = make_official_folder(tmp_path)
    bad = dict(batches["test_batch"])
    bad[b"labels"] = bad[b"labels"][:-1]
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match=rf"test_batch: 'labels' must be a list of {PER_BATCH} integers"):
        load_images(str(folder))
    bad[b"labels"] = [0] * PER_BATCH
    bad[b"data"] = np.zeros((PER_BATCH, 100), np.uint8)
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match=r"test_batch: 'data' must be a uint8 array of shape \(N, 3072\)"):
        load_images(str(folder))


def test_official_incomplete_and_not_a_pickle(tmp_path, tmp_cache):
    folder, _ = make_official_folder(tmp_path)
    (folder / "data_batch_2").write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match=r"data_batch_2: not a readable python pickle"):
        load_images(str(folder))
    (folder / "data_batch_2").unlink()
    with pytest.raises(ValueError, match=r"incomplete: missing .*data_batch_2"):
        load_images(str(folder))


# --------------------------------------------------------------------------- synthetic image folders

FOLDER_CLASSES = ["bee", "ant", "cow"]  # deliberately unsorted: classes come out sorted


def make_image_folder(root: Path, sizes=(("train", 4), ("test", 2)), hw=(8, 6), seed=1) -> dict[str, np.ndarray]:
    """PNG images (lossless, so pixels round-trip exactly); returns the expected NCHW arrays per split."""
    rng = np.random.default_rng(seed)
    expected = {}
    for split, n in sizes:
        xs = []
        for c in sorted(FOLDER_CLASSES):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i:03d}.png")
                xs.append(img.transpose(2, 0, 1))
        expected[split] = np.stack(xs)
    return expected


def zip_folder(folder: Path, out: Path, top: str | None) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder).as_posix()
            zf.write(p, f"{top}/{rel}" if top else rel)
    return out


def check_folder(ds: ImageDataset, expected: dict[str, np.ndarray], n_train=4, n_test=2) -> None:
    assert ds.classes == ["ant", "bee", "cow"]
    np.testing.assert_array_equal(ds.train_x, expected["train"])
    np.testing.assert_array_equal(ds.test_x, expected["test"])
    np.testing.assert_array_equal(ds.train_y, np.repeat(np.arange(3), n_train))
    np.testing.assert_array_equal(ds.test_y, np.repeat(np.arange(3), n_test))
    assert ds.train_x.shape[1:] == (3, 8, 6) and ds.train_y.dtype == np.int64


def test_image_folder_loads(tmp_path, tmp_cache):
    expected = make_image_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "ant" / ".DS_Store").write_bytes(b"\0junk")  # hidden files are ignored
    ds = load_images(str(tmp_path / "imgs"))
    check_folder(ds, expected)
    assert ds.source.startswith("image folder, folder ") and "6x8 RGB" in ds.source


@pytest.mark.parametrize("top", [None, "mydata"])
def test_image_folder_zip_loads(tmp_path, tmp_cache, top):
    expected = make_image_folder(tmp_path / "imgs")
    z = zip_folder(tmp_path / "imgs", tmp_path / "imgs.zip", top)
    ds = load_images(str(z))
    check_folder(ds, expected)
    assert ("(mydata/)" in ds.source) == (top is not None)


def test_image_folder_tar_loads(tmp_path, tmp_cache):
    expected = make_image_folder(tmp_path / "imgs")
    check_folder(load_images(str(make_tar(tmp_path / "imgs", tmp_path / "imgs.tar.gz"))), expected)


def test_grayscale_images_become_rgb(tmp_path, tmp_cache):
    make_image_folder(tmp_path / "imgs")
    gray = np.arange(48, dtype=np.uint8).reshape(8, 6)
    Image.fromarray(gray, mode="L").save(tmp_path / "imgs" / "test" / "cow" / "001.png")
    ds = load_images(str(tmp_path / "imgs"))
    np.testing.assert_array_equal(ds.test_x[-1], np.stack([gray] * 3))


def test_cache_is_used_and_invalidated(tmp_path, tmp_cache, monkeypatch):
    expected = make_image_folder(tmp_path / "imgs")
    z = zip_folder(tmp_path / "imgs", tmp_path / "imgs.zip", "top")
    first = load_images(str(z))
    assert len(list(tmp_cache.glob("imgs.zip-*.npz"))) == 1

    def no_decoding(tree):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(images, "_decode_tree", no_decoding)
    again = load_images(str(z))
    check_folder(again, expected)
    assert again.source == first.source
    # A changed archive (new mtime) is decoded again.
    st = z.stat()
    os.utime(z, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load_images(str(z))


def test_torn_cache_file_is_rebuilt(tmp_path, tmp_cache):
    expected = make_image_folder(tmp_path / "imgs")
    load_images(str(tmp_path / "imgs"))
    (cache,) = tmp_cache.glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:100])
    check_folder(load_images(str(tmp_path / "imgs")), expected)


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    expected = make_image_folder(tmp_path / "imgs")
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("NORMLAB_CACHE", str(blocker / "sub"))
    with pytest.warns(UserWarning, match=r"could not cache the decoded arrays .*set NORMLAB_CACHE"):
        check_folder(load_images(str(tmp_path / "imgs")), expected)


def test_corrupt_zip_member_names_the_member(tmp_path, tmp_cache):
    make_image_folder(tmp_path / "imgs")
    z = zip_folder(tmp_path / "imgs", tmp_path / "imgs.zip", None)  # stored, uncompressed
    raw = bytearray(z.read_bytes())
    at = raw.index(b"\x89PNG") + 40
    raw[at] ^= 0xFF
    z.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"imgs\.zip: member test/ant/000\.png: cannot read it from the zip \(Bad CRC-32"):
        load_images(str(z))


def test_zip_without_train_folder_is_clear_error(tmp_path, tmp_cache):
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a/cat/1.png", b"")
        zf.writestr("b/readme.txt", b"hi")
    with pytest.raises(ValueError, match=r"x\.zip: no train/ folder found; expected an image folder .*Found at the top: a, b"):
        load_images(str(z))


def test_class_mismatch_is_clear_error(tmp_path, tmp_cache):
    make_image_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "test" / "bee").rename(tmp_path / "imgs" / "test" / "bees")
    with pytest.raises(ValueError, match=r"class folders differ between train/ and test/: only in train: \['bee'\]; "
                                         r"only in test: \['bees'\]"):
        load_images(str(tmp_path / "imgs"))


def test_wrong_image_size_names_the_file(tmp_path, tmp_cache):
    make_image_folder(tmp_path / "imgs")
    bad = tmp_path / "imgs" / "test" / "bee" / "001.png"
    Image.fromarray(np.zeros((9, 6, 3), np.uint8)).save(bad)
    with pytest.raises(ValueError, match=rf"{bad}: image is 6x9, expected 6x8 like the first image"):
        load_images(str(tmp_path / "imgs"))


def test_undecodable_image_names_the_member(tmp_path, tmp_cache):
    make_image_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "cow" / "002.png").write_bytes(b"not a png at all")
    z = zip_folder(tmp_path / "imgs", tmp_path / "imgs.zip", "top")
    with pytest.raises(ValueError, match=r"imgs\.zip: member top/train/cow/002\.png: cannot decode the image"):
        load_images(str(z))


def test_non_image_and_misplaced_files_are_clear_errors(tmp_path, tmp_cache):
    make_image_folder(tmp_path / "imgs")
    notes = tmp_path / "imgs" / "train" / "ant" / "notes.txt"
    notes.write_text("x")
    with pytest.raises(ValueError, match=rf"{notes}: not an image file; expected one of .jpg"):
        load_images(str(tmp_path / "imgs"))
    notes.unlink()
    loose = tmp_path / "imgs" / "test" / "loose.png"
    loose.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{loose}: expected test/<class>/<image>, found a file directly in test/"):
        load_images(str(tmp_path / "imgs"))


def test_bad_paths_are_clear_errors(tmp_path, tmp_cache):
    with pytest.raises(FileNotFoundError, match=r"nope\.zip: no such file or folder; expected 'cifar10'"):
        load_images(str(tmp_path / "nope.zip"))
    f = tmp_path / "plain.bin"
    f.write_bytes(b"12345")
    with pytest.raises(ValueError, match=r"plain\.bin: not a folder, zip or tar archive"):
        load_images(str(f))
    with pytest.raises(ValueError, match=r"expected data to be 'cifar10' or a path"):
        load_images("")


# --------------------------------------------------------------------------- the real data


def test_real_cifar_jpeg_zip(cifar_zip):
    ds = load_images(str(cifar_zip))
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int64
    assert ds.classes == "airplane automobile bird cat deer dog frog horse ship truck".split()
    np.testing.assert_array_equal(np.bincount(ds.train_y), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_y), [1000] * 10)
    mean, std = channel_stats(ds.train_x)
    np.testing.assert_allclose(mean, [0.4913, 0.4821, 0.4465], atol=2e-3)
    np.testing.assert_allclose(std, [0.2452, 0.2428, 0.2606], atol=2e-3)
    # The first training image is decoded exactly as Pillow decodes the member.
    with zipfile.ZipFile(cifar_zip) as zf:
        ref = np.asarray(Image.open(io.BytesIO(zf.read("cifar10-jpeg/train/airplane/0000.jpg"))).convert("RGB"))
    np.testing.assert_array_equal(ds.train_x[0], ref.transpose(2, 0, 1))


# --------------------------------------------------------------------------- splits and statistics


def test_train_val_split_properties():
    tr, va = train_val_split(50000, 10000, seed=3)
    assert len(tr) == 40000 and len(va) == 10000 and tr.dtype == np.int64 and va.dtype == np.int64
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(50000))  # disjoint, complete
    tr2, va2 = train_val_split(50000, 10000, seed=3)
    np.testing.assert_array_equal(va, va2)
    _, va3 = train_val_split(50000, 10000, seed=4)
    assert not np.array_equal(va, va3)
    assert va.min() < 1000 and va.max() > 49000  # drawn across the whole set, not a block
    tr0, va0 = train_val_split(10, 0)
    assert len(va0) == 0 and list(tr0) == list(range(10))


@pytest.mark.parametrize("n,val", [(10, 10), (10, -1), (0, 0), (10.0, 2)])
def test_train_val_split_refuses_bad_sizes(n, val):
    with pytest.raises(ValueError, match="expected integers 0 <= val_size < num_train"):
        train_val_split(n, val)


def test_channel_stats_matches_float_reference():
    x = np.random.default_rng(0).integers(0, 256, (7, 3, 5, 4), dtype=np.uint8)
    mean, std = channel_stats(x)
    f = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, f.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, f.std(axis=(0, 2, 3)), rtol=1e-12)
    with pytest.raises(ValueError, match=r"expected a non-empty uint8 array of shape \(N, C, H, W\), got float64"):
        channel_stats(f)


# --------------------------------------------------------------------------- batches


MEAN = torch.tensor([0.49, 0.48, 0.45])
STD = torch.tensor([0.25, 0.24, 0.26])


def _data(n=20, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)
    return x, torch.arange(n)


def _normalize(x_uint8: torch.Tensor) -> torch.Tensor:
    return (x_uint8.float() / 255 - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)


def _reference_crop(img: np.ndarray, dy: int, dx: int, flip: bool, pad: int = 4) -> np.ndarray:
    """Slow, obviously correct: pad one (C, H, W) image with zeros, cut the window, maybe mirror it."""
    c, h, w = img.shape
    padded = np.pad(img, ((0, 0), (pad, pad), (pad, pad)))
    win = padded[:, dy:dy + h, dx:dx + w]
    return win[:, :, ::-1] if flip else win


def test_batches_without_augmentation_are_exact_normalization():
    x, y = _data(n=10)
    batches = list(iterate_batches(x, y, 4, shuffle=False, augment=False, mean=MEAN, std=STD))
    assert [len(b[1]) for b in batches] == [4, 4, 2] and num_batches(10, 4) == 3
    xb = torch.cat([b[0] for b in batches])
    assert xb.dtype == torch.float32 and xb.shape == (10, 3, 32, 32)
    assert torch.equal(xb, _normalize(x))
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    dropped = list(iterate_batches(x, y, 4, shuffle=False, augment=False, mean=MEAN, std=STD, drop_last=True))
    assert [len(b[1]) for b in dropped] == [4, 4] and num_batches(10, 4, drop_last=True) == 2


def test_shuffle_visits_every_image_once_and_is_deterministic():
    x, y = _data(n=50)
    run = lambda seed: list(iterate_batches(x, y, 16, shuffle=True, augment=False, mean=MEAN, std=STD,
                                            generator=torch.Generator().manual_seed(seed)))
    a, b, c = run(0), run(0), run(1)
    ya = torch.cat([t[1] for t in a])
    assert sorted(ya.tolist()) == list(range(50)) and ya.tolist() != list(range(50))
    assert torch.equal(torch.cat([t[0] for t in a]), _normalize(x[ya]))  # images travel with their labels
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(ya, torch.cat([t[1] for t in c]))


def _match_window(out_img: np.ndarray, src: np.ndarray) -> list[tuple[int, int, bool]]:
    """Every (dy, dx, flip) whose reference crop of ``src`` equals ``out_img`` (brute force over 9*9*2)."""
    h, w = src.shape[1:]
    padded = np.pad(src, ((0, 0), (4, 4), (4, 4)))
    mirrored = out_img[:, :, ::-1]
    found = [(dy, dx, fl) for dy in range(9) for dx in range(9) for fl in (False, True)
             if np.array_equal(mirrored if fl else out_img, padded[:, dy:dy + h, dx:dx + w])]
    assert all(np.array_equal(out_img, _reference_crop(src, *m)) for m in found)
    return found


def test_augmentation_crops_are_shifted_windows_of_the_padded_image():
    x, y = _data(n=64)
    g = torch.Generator().manual_seed(5)
    found = []
    for xb, yb in iterate_batches(x, y, 32, shuffle=True, augment=True, mean=MEAN, std=STD, generator=g):
        assert xb.shape == (len(yb), 3, 32, 32) and xb.dtype == torch.float32
        # Undo the normalization exactly enough to recover the uint8 pixels.
        raw = torch.round((xb * STD.view(1, 3, 1, 1) + MEAN.view(1, 3, 1, 1)) * 255).to(torch.uint8).numpy()
        for img, label in zip(raw, yb.tolist()):
            matches = _match_window(img, x[label].numpy())
            assert len(matches) == 1, f"sample {label} is not one shifted (and maybe flipped) window: {matches}"
            found.append(matches[0])
    dys, dxs, flips = zip(*found)
    assert len(set(dys)) >= 6 and len(set(dxs)) >= 6  # offsets 0..8 all possible
    assert 16 <= sum(flips) <= 48  # about half flipped
    assert any(dy != 4 or dx != 4 for dy, dx, _ in found)  # shifted windows show the zero border


def test_augmentation_is_deterministic_given_the_generator_state():
    x, y = _data(n=40)
    g = torch.Generator().manual_seed(11)
    state = g.get_state()
    first = list(iterate_batches(x, y, 16, shuffle=True, augment=True, mean=MEAN, std=STD, generator=g))
    g.set_state(state)  # as the trainer does on resume
    second = list(iterate_batches(x, y, 16, shuffle=True, augment=True, mean=MEAN, std=STD, generator=g))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(first, second))
    third = list(iterate_batches(x, y, 16, shuffle=True, augment=True, mean=MEAN, std=STD,
                                 generator=torch.Generator().manual_seed(12)))
    assert not torch.equal(first[0][0], third[0][0])


def test_iterate_batches_refuses_bad_input():
    x, y = _data(n=4)
    with pytest.raises(ValueError, match=r"expected x to be a uint8 tensor of shape \(N, C, H, W\), got torch.float32"):
        next(iterate_batches(x.float(), y, 2, shuffle=False, augment=False, mean=MEAN, std=STD))
    with pytest.raises(ValueError, match=r"expected y of shape \(4,\)"):
        next(iterate_batches(x, y[:3], 2, shuffle=False, augment=False, mean=MEAN, std=STD))
    with pytest.raises(ValueError, match=r"expected batch_size >= 1, got 0"):
        next(iterate_batches(x, y, 0, shuffle=False, augment=False, mean=MEAN, std=STD))
    with pytest.raises(ValueError, match=r"expected std to be a tensor of 3 per-channel values"):
        next(iterate_batches(x, y, 2, shuffle=False, augment=False, mean=MEAN, std=STD[:2]))
