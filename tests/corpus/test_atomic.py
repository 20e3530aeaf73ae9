"""atomic_write: a file appears whole under its final name, or the old one stays; temporaries never linger."""

from __future__ import annotations

import json

import fsspec
import pytest

from corpus.atomic import TMP_PREFIX, atomic_write, write_json_atomic


def test_success_renames_into_place(tmp_path):
    path = tmp_path / "sub" / "plan.json"  # the folder is made on the way
    with atomic_write(path) as f:
        f.write("naïve π\n")
        assert not path.exists(), "the final name appears only when the block ends"
        assert [p.name for p in path.parent.iterdir()][0].startswith(TMP_PREFIX)
    assert path.read_text(encoding="utf-8") == "naïve π\n"
    assert [p.name for p in path.parent.iterdir()] == ["plan.json"]


def test_binary_mode_with_fsync(tmp_path):
    path = tmp_path / "blob.bin"
    with atomic_write(path, "wb", fsync=True) as f:
        f.write(b"\x00\xffabc")
    assert path.read_bytes() == b"\x00\xffabc"


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path, error):
    path = tmp_path / "plan.json"
    path.write_text("old")
    with pytest.raises(type(error)):
        with atomic_write(path) as f:
            f.write("half a new fi")
            raise error
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_two_writers_get_different_temp_names(tmp_path):
    path = tmp_path / "x.json"
    with atomic_write(path) as a, atomic_write(path) as b:
        temps = sorted(p.name for p in tmp_path.iterdir())
        assert len(temps) == 2 and all(t.startswith(TMP_PREFIX) and t.endswith("-x.json") for t in temps)
        a.write("first")
        b.write("second")
    assert path.read_text() == "first"  # the last rename wins: `a` closes after `b`
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_fsspec_url_and_write_json_atomic(tmp_path):
    url = f"memory://{tmp_path.name}/mix.json"
    data = {"name": "m", "ratios": {"b": 0.5, "a": 0.5}}
    write_json_atomic(url, data)
    with fsspec.open(url, "r") as f:
        text = f.read()
    assert text == json.dumps(data, indent=2) + "\n"  # key order kept, final newline
    fs = fsspec.filesystem("memory")
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(f"/{tmp_path.name}", detail=False)] == ["mix.json"]


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode 'a'"):
        with atomic_write(tmp_path / "x", "a"):
            pass
