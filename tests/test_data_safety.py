"""Reading a file never runs code from it, and archives never write outside their folder (issue 2)."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from normlab.data import archives, images
from normlab.data.archives import UnsafeArchiveError, check_member_name, restricted_pickle_load, safe_extract_tar

from test_data_images import make_image_folder, make_official_folder, make_tar


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("NORMLAB_CACHE", str(d))
    return d


class _RunsCommand:
    """A pickle payload that, loaded with plain ``pickle.load``, would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def _marker_command(tmp_path: Path) -> tuple[str, Path]:
    marker = tmp_path / "pwned"
    return f"touch {marker}", marker


# --------------------------------------------------------------------------- pickles


def test_crafted_pickle_is_refused_and_does_not_run(tmp_path):
    cmd, marker = _marker_command(tmp_path)
    payload = pickle.dumps({b"data": _RunsCommand(cmd), b"labels": [0]}, protocol=2)
    assert b"system" in payload  # the pickle really names os.system
    with pytest.raises(UnsafeArchiveError, match=r"evil\.pkl: refused to load the pickled global (posix|os|nt)\.system"):
        restricted_pickle_load(payload, source="evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_eval_is_refused_in_every_protocol(protocol):
    with pytest.raises(UnsafeArchiveError, match=r"refused to load the pickled global (__builtin__|builtins)\.eval"):
        restricted_pickle_load(pickle.dumps([_CallsEval()], protocol=protocol))


def test_codecs_encode_admitted_only_for_latin1():
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, 'latin1'): that must load...
    assert restricted_pickle_load(pickle.dumps({b"k": b"\x00\xffv"}, protocol=2)) == {b"k": b"\x00\xffv"}
    # ...but no other codec (codec lookup imports modules by name).
    import _codecs

    class _OtherCodec:
        def __reduce__(self):
            return (_codecs.encode, ("x", "rot13"))

    with pytest.raises(UnsafeArchiveError, match=r"encode\(str, 'latin1'\), got encoding 'rot13'"):
        restricted_pickle_load(pickle.dumps(_OtherCodec(), protocol=2))


def test_official_style_arrays_load():
    arr = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    out = restricted_pickle_load(pickle.dumps({b"data": arr, b"labels": [1, 2], b"name": "x"}, protocol=2))
    np.testing.assert_array_equal(out[b"data"], arr)
    assert out[b"labels"] == [1, 2] and out[b"name"] == "x"


def test_tampered_official_batch_is_an_error_not_an_exploit(tmp_path, tmp_cache):
    folder, batches = make_official_folder(tmp_path / "data")
    cmd, marker = _marker_command(tmp_path)
    tampered = dict(batches["data_batch_2"])
    tampered[b"labels"] = _RunsCommand(cmd)
    (folder / "data_batch_2").write_bytes(pickle.dumps(tampered, protocol=2))
    tgz = make_tar(folder, tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(UnsafeArchiveError, match=rf"{folder / 'data_batch_2'}: refused to load the pickled global"):
        images.load_images(str(folder))
    with pytest.raises(UnsafeArchiveError, match=r"cifar-10-python\.tar\.gz: member cifar-10-batches-py/data_batch_2: refused"):
        images.load_images("cifar10", data_dir=tmp_path, download=False)  # the archive beside the folder
    assert tgz.exists() and not marker.exists()


# --------------------------------------------------------------------------- member names


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/etc/evil", "\\evil", "C:evil", "a\\..\\..\\evil"])
def test_member_names_that_leave_the_folder_are_refused(name):
    with pytest.raises(UnsafeArchiveError, match=r"x\.zip: member .* points outside the archive's folder"):
        check_member_name(name, "x.zip")


@pytest.mark.parametrize("name,expected", [("a/b.png", "a/b.png"), ("./a//b.png", "a/b.png"), ("a\\b.png", "a/b.png"),
                                           ("dots..ok/x", "dots..ok/x")])
def test_ordinary_member_names_pass(name, expected):
    assert check_member_name(name, "x.zip") == expected


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("fine/readme.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def test_tar_with_parent_member_is_refused(tmp_path):
    tgz = _tar_with(tmp_path / "bad.tar.gz", tarfile.TarInfo("../evil"), b"boo")
    dest = tmp_path / "out" / "inner"
    with pytest.raises(UnsafeArchiveError, match=r"bad\.tar\.gz: member '\.\./evil' points outside"):
        safe_extract_tar(tgz, dest)
    assert not (tmp_path / "out" / "evil").exists() and not (dest / "fine").exists()  # nothing extracted


def test_tar_with_escaping_symlink_is_refused_by_the_data_filter(tmp_path):
    link = tarfile.TarInfo("fine/passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    tgz = _tar_with(tmp_path / "link.tar.gz", link)
    with pytest.raises(UnsafeArchiveError, match=r"link\.tar\.gz: refusing to extract"):
        safe_extract_tar(tgz, tmp_path / "out")
    assert not (tmp_path / "out" / "fine" / "passwd").is_symlink()


def test_safe_extract_tar_extracts_ordinary_archives(tmp_path):
    tgz = _tar_with(tmp_path / "ok.tar.gz", tarfile.TarInfo("fine/data.bin"), b"\x01\x02")
    out = safe_extract_tar(tgz, tmp_path / "out")
    assert (out / "fine" / "data.bin").read_bytes() == b"\x01\x02"
    assert (out / "fine" / "readme.txt").read_text() == "ok"


def test_tar_checks_without_the_data_filter(tmp_path, monkeypatch):
    """Pythons before 3.11.4 lack tar's data filter: the explicit member check must refuse the same things."""
    monkeypatch.delattr(tarfile, "data_filter")
    link = tarfile.TarInfo("fine/passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../etc/passwd"
    with pytest.raises(UnsafeArchiveError, match=r"member 'fine/passwd' links outside the archive"):
        safe_extract_tar(_tar_with(tmp_path / "link.tar.gz", link), tmp_path / "out")
    fifo = tarfile.TarInfo("fine/pipe")
    fifo.type = tarfile.FIFOTYPE
    with pytest.raises(UnsafeArchiveError, match=r"member 'fine/pipe' is a device, fifo or other special file"):
        safe_extract_tar(_tar_with(tmp_path / "fifo.tar.gz", fifo), tmp_path / "out")
    with pytest.raises(UnsafeArchiveError, match=r"member '\.\./evil' points outside"):
        safe_extract_tar(_tar_with(tmp_path / "bad.tar.gz", tarfile.TarInfo("../evil"), b"x"), tmp_path / "out")
    assert not (tmp_path / "out" / "fine").exists() and not (tmp_path / "evil").exists()
    out = safe_extract_tar(_tar_with(tmp_path / "ok.tar.gz", tarfile.TarInfo("fine/a.bin"), b"\x07"), tmp_path / "ok")
    assert (out / "fine" / "a.bin").read_bytes() == b"\x07"


def test_load_images_refuses_tar_with_parent_member(tmp_path, tmp_cache):
    (tmp_path / "data").mkdir()
    tgz = _tar_with(tmp_path / "data" / "bad.tar.gz", tarfile.TarInfo("../evil"), b"boo")
    with pytest.raises(UnsafeArchiveError, match=r"member '\.\./evil' points outside"):
        images.load_images(str(tgz))
    assert not (tmp_path / "evil").exists() and not (tmp_cache / "evil").exists()


def test_zip_with_parent_member_is_refused(tmp_path, tmp_cache):
    make_image_folder(tmp_path / "imgs")
    z = tmp_path / "sub" / "bad.zip"
    z.parent.mkdir()
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted((tmp_path / "imgs").rglob("*.png")):
            zf.write(p, p.relative_to(tmp_path / "imgs").as_posix())
        zf.writestr(zipfile.ZipInfo("../evil"), b"boo")
    with pytest.raises(UnsafeArchiveError, match=r"bad\.zip: member '\.\./evil' points outside the archive's folder"):
        images.load_images(str(z))
    assert not (tmp_path / "evil").exists()


# --------------------------------------------------------------------------- downloads


def test_download_keeps_only_a_verified_file(tmp_path):
    src = tmp_path / "served.bin"
    src.write_bytes(b"payload" * 1000)
    dest = tmp_path / "dl" / "file.bin"
    archives.download(src.as_uri(), dest, archives.md5sum(src))
    assert dest.read_bytes() == src.read_bytes()
    bad = tmp_path / "dl2" / "file.bin"
    with pytest.raises(ValueError, match=r"downloaded file has MD5 [0-9a-f]{32}, expected f{32}; deleted it"):
        archives.download(src.as_uri(), bad, "f" * 32)
    assert list(bad.parent.iterdir()) == []  # neither the file nor a .part remains


def test_one_reading_of_archive_zip_member_in_any_case(tmp_path):
    """``x.zip:member`` is read one way everywhere (GMB, GloVe, NERConfig, the study's checks)."""
    assert archives.split_member("a/b.zip:inner.txt") == (Path("a/b.zip"), "inner.txt")
    assert archives.split_member("a/B.ZIP:dir/inner.txt") == (Path("a/B.ZIP"), "dir/inner.txt")
    assert archives.split_member("a/b.zip") == (Path("a/b.zip"), None)
    odd = tmp_path / "odd.zip:name.txt"  # a file whose own name holds ".zip:" is never split
    odd.write_text("x")
    assert archives.split_member(odd) == (odd, None)
    z = tmp_path / "GMB.ZIP"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.txt", b"one")
        zf.writestr("b.txt", b"two")
    assert archives.read_bytes(f"{z}:b.txt") == (b"two", f"{z}:b.txt")


def test_ner_config_reads_a_zip_member_as_the_data_readers_do(tmp_path):
    from normlab.train.ner import NERConfig

    z = tmp_path / "GMB.ZIP"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ner.txt", b"x")
    NERConfig(data=[f"{z}:ner.txt"], out=str(tmp_path / "r")).check_data_files()  # .ZIP: was refused
