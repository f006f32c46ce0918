"""Guidance search on the embedded digit models with a small reference batch: every grid point in the table, a
resumed search equal to an uninterrupted one, the best recipe reproducing its gFID through `restok eval generation`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from restok import HARGenerator, ResTok, SamplingConfig
from restok.eval import make_reference
from restok.eval.inception import load_inception
from restok.eval.search import SearchGrid, refined_grid, search_guidance
from restok.runtime.processes import Processes

from ..helpers import run_cli

QUIET = Processes(progress=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, inception_torchscript):
    from restok.data.embedded import MNISTDigits

    d = tmp_path_factory.mktemp("search")
    digits, _ = MNISTDigits("test", 32).batch(range(0, 1000, 20))  # 50 held-out digits
    inc = load_inception(inception_torchscript)
    make_reference((digits * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), inc, d / "ref.npz")
    return {
        "dir": d,
        "ref": d / "ref.npz",
        "inc": inc,
        "inc_file": inception_torchscript,
        "tok": ResTok.from_pretrained("restok-tiny-mnist"),
        "gen": HARGenerator.from_pretrained("har-tiny-mnist"),
    }


GRID = SearchGrid(cfg_scale=(1.0, 2.0), cfg_schedule=("constant", "step"), cfg_start=(0.0, 0.5))


def test_grid_points_drop_settings_that_do_nothing() -> None:
    pts = GRID.points()
    assert [(p.cfg_scale, p.cfg_schedule, p.cfg_start) for p in pts] == [
        (1.0, "constant", 0.0),
        (2.0, "constant", 0.0),
        (2.0, "step", 0.0),
        (2.0, "step", 0.5),
    ]
    with pytest.raises(ValueError, match="no values for cfg_scale"):
        SearchGrid.from_dict({"cfg_scale": []}).points()
    with pytest.raises(ValueError, match="unknown guidance schedule"):
        SearchGrid(cfg_schedule=("cosine",)).points()
    finer = refined_grid(SamplingConfig(cfg_scale=2.0, cfg_schedule="step", cfg_start=0.5), GRID)
    assert (
        finer.cfg_scale == (1.5, 2.0, 2.5) and finer.cfg_start == (0.25, 0.5, 0.75) and finer.cfg_schedule == ("step",)
    )


def test_search_table_resume_and_best_recipe(setup, tmp_path) -> None:
    s = setup
    kw = dict(per_class=1, batch_size=4, seed=3, processes=QUIET)
    full = search_guidance(s["gen"], s["tok"], s["inc"], s["ref"], tmp_path / "full", GRID, **kw)
    rows = full["rows"]
    assert len(rows) == 4 and [r["point"] for r in rows] == [0, 1, 2, 3]
    table = json.loads((tmp_path / "full" / "table.json").read_text())
    assert [{k: r[k] for k in ("cfg_scale", "cfg_schedule", "cfg_start")} for r in table] == [
        {"cfg_scale": p.cfg_scale, "cfg_schedule": p.cfg_schedule, "cfg_start": p.cfg_start} for p in GRID.points()
    ]
    csv_lines = (tmp_path / "full" / "table.csv").read_text().splitlines()
    assert csv_lines[0].startswith("stage,point,cfg_scale") and len(csv_lines) == 5
    assert all(r["num_samples"] == 10 and r["gfid"] > 0 and 0 <= r["precision"] <= 1 for r in rows)
    assert (tmp_path / "full" / "search.png").stat().st_size > 1000
    # a search killed in its third point (after one of its batches) resumes to the same table
    part = tmp_path / "part"
    shutil.copytree(tmp_path / "full", part)
    for name in ("table.json", "table.csv", "best.json"):
        (part / name).unlink()
    (part / "stage1" / "point-0002.json").unlink()
    (part / "stage1" / "point-0003.json").unlink()
    shutil.rmtree(part / "stage1" / "point-0003.json.work")
    (part / "stage1" / "point-0002.json.work" / "chunk-000001.npz").unlink()
    again = search_guidance(s["gen"], s["tok"], s["inc"], s["ref"], part, GRID, **kw)
    assert [r["gfid"] for r in again["rows"]] == [r["gfid"] for r in rows]
    assert (
        json.loads((part / "best.json").read_text())["sampling"]
        == json.loads((tmp_path / "full" / "best.json").read_text())["sampling"]
    )
    # the best recipe, passed as it is to `restok eval generation`, reproduces its gFID
    best = json.loads((tmp_path / "full" / "best.json").read_text())
    assert SamplingConfig.load(tmp_path / "full" / "best.json") == SamplingConfig.from_dict(best["sampling"])
    r = run_cli(
        "eval",
        "generation",
        "--generator",
        "har-tiny-mnist",
        "--tokenizer",
        "restok-tiny-mnist",
        "--reference",
        str(s["ref"]),
        "--inception-weights",
        s["inc_file"],
        "--sampling",
        str(tmp_path / "full" / "best.json"),
        "--per-class",
        "1",
        "--seed",
        "3",
        "--batch-size",
        "4",
        "--no-progress",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "check.json"),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "check.json").read_text())["gfid"] == best["gfid"]


def test_cli_search_with_refinement_and_refusals(setup, tmp_path) -> None:
    s = setup
    base = [
        "eval",
        "search",
        "--generator",
        "har-tiny-mnist",
        "--tokenizer",
        "restok-tiny-mnist",
        "--inception-weights",
        s["inc_file"],
        "--batch-size",
        "5",
        "--no-progress",
        "--device",
        "cpu",
    ]
    r = run_cli(
        *base,
        "--reference",
        str(s["ref"]),
        "--cfg-scale",
        "1.5",
        "3",
        "--samples-per-class",
        "1",
        "--refine",
        "--refine-samples-per-class",
        "2",
        "--out",
        str(tmp_path / "s"),
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "s" / "table.json").read_text())
    stage2 = [x for x in rows if x["stage"] == 2]
    assert (
        len([x for x in rows if x["stage"] == 1]) == 2
        and len(stage2) == 3
        and all(x["num_samples"] == 20 for x in stage2)
    )
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    assert best["stage"] == 2 and best["gfid"] == min(x["gfid"] for x in stage2)
    (tmp_path / "empty.yaml").write_text("cfg_scale: []\n")
    r = run_cli(
        *base, "--reference", str(s["ref"]), "--grid", str(tmp_path / "empty.yaml"), "--out", str(tmp_path / "e")
    )
    assert r.returncode == 2 and "no values for cfg_scale" in r.stderr and "Traceback" not in r.stderr
    np.savez(tmp_path / "bad-ref.npz", something=np.zeros(3))
    r = run_cli(*base, "--reference", str(tmp_path / "bad-ref.npz"), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "has none of mu/sigma" in r.stderr
