"""The runtime's guarantees, one class at a time: nothing restok writes inside an output folder goes through a planted
symbolic link; inputs are regular files; parsed YAML is bounded; no NaN reaches a result file; a killed writer's
temporaries are cleaned; a full disk is named as such."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from restok.runtime.chunks import ChunkJob
from restok.runtime.files import (
    DiskFullError,
    UnsafePathError,
    atomic_write,
    check_finite,
    disk_full_error,
    make_dir,
    open_nofollow,
    remove_stale_temporaries,
    write_json,
    write_text,
)
from restok.runtime.inputs import NotRegularFileError, load_yaml, read_text_input, regular_file
from restok.runtime.locks import FolderLock


def test_planted_links_are_never_written_through(tmp_path, outside) -> None:
    out = tmp_path / "run"
    out.mkdir()
    # the lock file, an appended log, a sub-folder
    (out / ".restok.lock").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        FolderLock(out, "test")
    (out / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        open_nofollow(out / "metrics.jsonl")
    (out / "checkpoints").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="checkpoints is a symbolic link"):
        make_dir(out / "checkpoints" / "step-1", inside=out)
    # an atomic write replaces a link at its target, and a link planted under its temporary name, never following them
    (out / "table.json").symlink_to(outside)
    tmp_name = out / f".table2.json.{os.getpid()}.tmp"
    tmp_name.symlink_to(outside)
    write_json(out / "table.json", {"a": 1})
    write_json(out / "table2.json", {"b": 2})
    assert not (out / "table.json").is_symlink() and json.loads((out / "table.json").read_text()) == {"a": 1}
    assert json.loads((out / "table2.json").read_text()) == {"b": 2} and not tmp_name.exists()
    assert outside.read_text() == "precious\n" and sorted(p.name for p in outside.parent.iterdir()) == ["precious.txt"]
    # the folder the user names may itself be a link: that is their choice
    chosen = tmp_path / "chosen"
    chosen.symlink_to(outside.parent, target_is_directory=True)
    assert make_dir(chosen / "images", inside=chosen).is_dir()
    (outside.parent / "images").rmdir()


def test_a_planted_lock_link_in_a_work_folder_is_refused(tmp_path, outside) -> None:
    work = tmp_path / "result.json.work"
    work.mkdir()
    (work / ".restok.lock").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        ChunkJob(work, {"a": 1}, 2, inside=tmp_path)
    (work / ".restok.lock").unlink()
    work.rmdir()
    work.symlink_to(outside.parent, target_is_directory=True)  # the derived work folder itself planted as a link
    with pytest.raises(UnsafePathError, match="work is a symbolic link"):
        ChunkJob(work, {"a": 1}, 2, inside=tmp_path)
    assert outside.read_text() == "precious\n"


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".point-0003.json.{dead}.tmp"
    other = tmp_path / f".point-0004.json.{dead}.tmp"
    live = tmp_path / f".point-0003.json.{os.getppid()}.tmp"  # a running process's: kept
    for p in (stale, other, live):
        p.write_text("half")
    write_text(tmp_path / "point-0003.json", "{}")  # a write of that file cleans its own stale temporaries
    assert not stale.exists() and other.exists() and live.exists()
    assert remove_stale_temporaries(tmp_path) == 1 and not other.exists() and live.exists()
    # a chunk job sweeps its work folder when it starts
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / f".chunk-000001.npz.{dead}.tmp").write_bytes(b"x")
    ChunkJob(tmp_path / "w", {"a": 1}, 2).close()
    assert not list((tmp_path / "w").glob(".*.tmp"))


def test_fifos_and_folders_are_refused_as_inputs_without_blocking(tmp_path) -> None:
    fifo = tmp_path / "in.yaml"
    os.mkfifo(fifo)
    t = time.perf_counter()
    with pytest.raises(NotRegularFileError, match="FIFO"):
        read_text_input(fifo, "config")
    with pytest.raises(NotRegularFileError, match="folder"):
        regular_file(tmp_path, "codes file")
    with pytest.raises(FileNotFoundError, match="no such file"):
        regular_file(tmp_path / "missing", "image")
    assert time.perf_counter() - t < 5
    big = tmp_path / "big.yaml"
    big.write_text("a: 1\n" * 10)
    with pytest.raises(ValueError, match="50 bytes, more than the 20"):
        read_text_input(big, "config", max_bytes=20)


def test_yaml_is_bounded_with_aliases_expanded() -> None:
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 values once expanded
    t = time.perf_counter()
    with pytest.raises(ValueError, match="expands to more than 100,000 values"):
        load_yaml("\n".join(levels), "bomb.yaml")
    assert time.perf_counter() - t < 5
    with pytest.raises(ValueError, match="contains itself"):
        load_yaml("&a [*a]", "loop.yaml")
    with pytest.raises(ValueError, match="nested too deeply|not valid YAML"):
        load_yaml("[" * 100_000, "deep.yaml")
    assert load_yaml("lr: 1e-4\nbetas: [0.9, 0.95]\nx: &x 1\ny: *x", "ok.yaml") == {
        "lr": "1e-4",
        "betas": [0.9, 0.95],
        "x": 1,
        "y": 1,
    }


def test_results_holding_nan_or_inf_are_not_written(tmp_path) -> None:
    for bad in ({"gfid": float("nan")}, {"rows": [{"psnr": float("inf")}]}):
        with pytest.raises(ValueError, match="not a finite number; nothing was written"):
            write_json(tmp_path / "r.json", bad)
    assert not (tmp_path / "r.json").exists()
    assert check_finite({"a": [1.0, 2]}, "x") == {"a": [1.0, 2]}


def test_a_full_disk_is_named_as_such(tmp_path) -> None:
    def full(p: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "f.bin").write_bytes(b"old")
    with pytest.raises(DiskFullError, match=r"disk full.*f\.bin.*previous file, if any, is intact"):
        atomic_write(tmp_path / "f.bin", full)
    assert (tmp_path / "f.bin").read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    # torch's zip writer and safetensors say it in their own words
    assert disk_full_error(RuntimeError("[enforce fail] unexpected pos 8092672 vs 8092560"), tmp_path / "x") is not None
    assert disk_full_error(RuntimeError("IoError(Os { code: 28, kind: StorageFull })"), tmp_path / "x") is not None
    assert disk_full_error(RuntimeError("shape mismatch"), tmp_path / "x") is None


def test_chunk_jobs_still_record_and_refuse_other_settings(tmp_path) -> None:
    job = ChunkJob(tmp_path / "w", {"a": 1}, 2)
    job.save(0, {"x": np.zeros(2)})
    job.close()
    from restok.runtime.chunks import ChunkError

    with pytest.raises(ChunkError, match="other settings"):
        ChunkJob(tmp_path / "w", {"a": 2}, 2)
