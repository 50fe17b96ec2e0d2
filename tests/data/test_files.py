"""data.files: atomic writes with the user's umask, write errors that name the file, and the
removal of the temporaries a kill leaves (only the project's own)."""
import errno
import os

import pytest

from data import files


def test_atomic_write_replaces_and_gets_the_umask_mode(tmp_path):
    path = tmp_path / "sub" / "x.json"
    old = os.umask(0o027)
    try:
        files.write_text_atomic(path, "one")
        files.write_text_atomic(path, "two")
    finally:
        os.umask(old)
    assert path.read_text() == "two" and os.listdir(path.parent) == ["x.json"]
    assert os.stat(path).st_mode & 0o777 == 0o640          # not mkstemp's 0600


def test_write_errors_name_the_file_and_leave_no_temporary(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.EFBIG, "File too large")        # as a file-size limit gives, with no file name
    monkeypatch.setattr(files.os, "fsync", full)
    path = tmp_path / "checkpoint.npz"
    with pytest.raises(OSError) as info:
        files.atomic_write(path, lambda f: f.write(b"x"))
    assert (info.value.filename, info.value.strerror) == (str(path), "File too large")
    assert os.listdir(tmp_path) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError) as info:                        # a parent that is a file
        files.write_text_atomic(tmp_path / "file" / "x.json", "")
    assert info.value.filename == str(tmp_path / "file" / "x.json")
    assert info.value.strerror == f"not a directory: {tmp_path / 'file'}"
    (tmp_path / "log.jsonl").mkdir()
    with pytest.raises(OSError) as info:
        files.append_text(tmp_path / "log.jsonl", "line\n")
    assert info.value.filename == str(tmp_path / "log.jsonl")


def test_remove_stale_temporaries_only_removes_its_own(tmp_path):
    ours = [".tmp-0123456789abcdef.npz", ".tmp-abcd_123.npz", ".tmp-0123456789abcdef.jsonl"]   # new and mkstemp names
    theirs = [".tmp-x.npz", "notes.tmp", ".tmp-0123456789abcdef", "model.npz", ".tmp-0123456789abcdef.npz~"]
    for name in ours + theirs:
        (tmp_path / name).write_text("")
    assert files.remove_stale_temporaries(tmp_path) == sorted(ours)
    assert sorted(os.listdir(tmp_path)) == sorted(theirs)
    assert files.remove_stale_temporaries(tmp_path / "missing") == []
