"""Atomic writes leave a complete file with the mode any other new file would get."""

from __future__ import annotations

import os
import stat

import pytest

from grpo_cli.files import write_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mask, mode):
    umask(mask)
    target = tmp_path / "run" / "config.yaml"
    write_atomic(target, "a: 1\n")
    write_atomic(target, "a: 2\n")  # replacing a file keeps the same rule
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_text() == "a: 2\n"
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "env.json"
    target.write_text("old\n")
    with pytest.raises(TypeError):
        write_atomic(target, None)  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["env.json"]
