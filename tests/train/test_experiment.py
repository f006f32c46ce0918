"""`restok experiment GRID --out DIR`: a 2 x 2 grid of tiny rows gives its table (mean and 95 % interval per row,
the commands of each cell, the rate plot); a kill -9 mid-grid and a rerun give the same table bytes, and so do the
cells split over two processes; a grid that cannot run is refused in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from restok.train.experiment import ExperimentGrid, _interval
from tests.helpers import ENV, Ran, one_line_error, one_thread, run_cli, write_image_folder

pytest.importorskip("accelerate")

TABLE = ("table.json", "table.csv", "table.md", "commands.md")


def _grid(tmp: Path, inception: str) -> Path:
    train = write_image_folder(tmp / "train", classes=2, per_class=4)
    val = write_image_folder(tmp / "val", classes=2, per_class=2)
    quick = "[batch_size=4, log_every=1, save_every=2, image_every=100]"  # (every cell logs to metrics.jsonl only)
    loss = "[loss.perceptual_weight=0, loss.discriminator_weight=0, loss.alignment_weight=0]"
    text = f"""
data: {train}
eval_data: {val}
seeds: [0, 1]
tokenizer_steps: 2
generator_steps: 2
tokenizer: {quick}
generator: {quick}
eval: {{num_images: 4, per_class: 4, batch_size: 4, inception_weights: {inception}, crop: center-only}}
rows:
  - name: ResTok
    tokenizer: {{config: restok-tiny, overrides: {loss}}}
  - name: One-D-Piece
    tokenizer: {{config: one-d-piece-tiny-single, overrides: {loss}}}
"""
    (tmp / "grid.yaml").write_text(text)
    return tmp / "grid.yaml"


def _process(grid: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "restok", "experiment", str(grid), "--out", str(out), "--device", "cpu", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**ENV, "OMP_NUM_THREADS": "1"},
        start_new_session=True,
    )


def _in_process(grid: Path, out: Path) -> Ran:
    """The command in this process, on one thread as the processes (OMP_NUM_THREADS=1): sums in the same order."""
    with one_thread():
        return run_cli("experiment", grid, "--out", out, "--device", "cpu")


def test_a_full_length_evaluation_is_one_point_of_the_rate_plot() -> None:
    """``eval.tokens: full`` scores the full length only, and its result records no length of its own: the plot's
    point is at the tokenizer's length (the families grid's rate.png had been empty)."""
    from restok.train.experiment import rate_points

    full = {"rfid": 150.0, "psnr": 17.0, "ssim": 0.5, "codebook_usage": 0.7, "settings": {}}
    assert rate_points(full, 32) == [{"tokens": 32, "rfid": 150.0, "psnr": 17.0, "ssim": 0.5}]
    curve = {"rate_curve": [{"tokens": 4, "rfid": 9.0, "psnr": 1.0, "ssim": 0.1}, {"tokens": 8, "rfid": 8.0}]}
    assert [p["tokens"] for p in rate_points(curve, 8)] == [4, 8]


def test_the_95_percent_interval_is_students() -> None:
    mean, half = _interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302652729911275 * 1.0 / 3**0.5)  # t(0.975, 2) * s / sqrt(n)
    assert _interval([5.0]) == (5.0, None)


@pytest.mark.parametrize(
    "text,words",
    [
        ("data: a\neval_data: b\nrows: []\n", "'rows' is empty"),
        ("data: a\nrows: [{tokenizer: restok-tiny}]\n", "'eval_data' is missing"),
        ("data: a\neval_data: b\nrows: [{tokenizer: restok-tiny}]\nepochs: 3\n", "unknown key(s) ['epochs']"),
        ("data: a\neval_data: b\nseeds: [0, 0]\nrows: [{tokenizer: restok-tiny}]\n", "'seeds' must be distinct"),
        ("data: a\neval_data: b\nrows: [{name: x, tokenizer: a}, {name: x, tokenizer: b}]\n", "row names must differ"),
        ("data: a\neval_data: b\ntokenizer_steps: 0\nrows: [{tokenizer: a}]\n", "'tokenizer_steps' must be"),
        ("data: a\neval_data: b\nrows: [{tokenizer: a}]\neval: {tokens: some}\n", "eval.tokens must be all or full"),
        ("data: a\neval_data: b\nrows: [{tokenizer: a}]\neval: {inception_dtype: fp16}\n", "eval.inception_dtype must"),
    ],
)
def test_a_grid_that_cannot_run_is_refused_in_one_line(tmp_path: Path, text: str, words: str) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    one_line_error(run_cli("experiment", grid, "--out", tmp_path / "out"), words)


def test_a_folder_of_another_grid_is_refused(tmp_path: Path) -> None:
    a = ExperimentGrid.from_dict({"data": "a", "eval_data": "b", "rows": [{"tokenizer": "restok-tiny"}]})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "experiment.json").write_text(json.dumps({**a.to_dict(), "data": "other"}))
    grid = tmp_path / "grid.yaml"
    grid.write_text("data: a\neval_data: b\nrows: [{tokenizer: restok-tiny}]\n")
    one_line_error(run_cli("experiment", grid, "--out", tmp_path / "out"), "another grid's cells", "data")


@pytest.mark.slow
def test_a_grid_gives_one_table_whether_killed_resumed_or_split(tmp_path: Path, inception_torchscript: str) -> None:
    grid = _grid(tmp_path, inception_torchscript)
    # the cells split over two processes, uninterrupted: the table every other way must give byte for byte
    tasks = [_process(grid, tmp_path / "split", "--task", str(i), "--tasks", "2") for i in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in tasks]
    assert [p.returncode for p in tasks] == [0, 0], [x[-2000:] for x in logs]
    if not (tmp_path / "split" / "table.json").exists():  # both finished at once: whoever comes last writes it
        assert _in_process(grid, tmp_path / "split").returncode == 0
    table = json.loads((tmp_path / "split" / "table.json").read_text())
    assert [r["row"] for r in table["rows"]] == ["ResTok", "One-D-Piece"] and all(
        r["seeds"] == 2 for r in table["rows"]
    )
    assert all(r["psnr"] is not None and r["psnr_ci95"] is not None and r["gfid"] is not None for r in table["rows"])
    assert (tmp_path / "split" / "rate.png").stat().st_size > 1000
    commands = (tmp_path / "split" / "commands.md").read_text()
    assert commands.count("restok train tokenizer") == 4 and commands.count("restok eval generation") == 4
    # one process, killed (-9) once the first cell is done, then a rerun: the same bytes
    killed = _process(grid, tmp_path / "killed")
    first = tmp_path / "killed" / "cells" / "ResTok" / "seed-0" / "cell.json"
    deadline = time.time() + 300
    while not first.exists():
        assert killed.poll() is None and time.time() < deadline, "the first cell did not finish"
        time.sleep(0.2)
    time.sleep(1.0)  # into the second cell's training
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    rerun = _in_process(grid, tmp_path / "killed")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert all((tmp_path / "split" / n).read_text() == (tmp_path / "killed" / n).read_text().replace("killed", "split")
               for n in TABLE)  # fmt: skip
