"""``restok experiment GRID.yaml --out DIR``: the paper's kind of comparison -- rows (a tokenizer recipe, any family or
ablation, with its generator) x seeds, every cell trained and scored the same way -- as one resumable command.

A cell is one (row, seed): the tokenizer trained on ``data``, its code set, the generator that fits the codes, the
reconstruction protocol on ``eval_data`` at every budget the tokenizer decodes, and gFID without guidance (as the
paper's ablations, Sec. 5.4) against a reference batch of ``eval_data`` that every cell shares. Every step is one of
restok's own resumable jobs in the cell's folder (``DIR/cells/ROW/seed-S/``) and is skipped once done, so a kill
anywhere and a rerun finish the grid with the same numbers; a cell ends with ``cell.json``. Cells are independent:
``--task I --tasks N`` (by default ``$SLURM_ARRAY_TASK_ID`` / ``$SLURM_ARRAY_TASK_COUNT``) runs every N-th cell, so
a SLURM array, or N processes, share a grid. Whichever process finds every cell done writes the table: per row, the
mean and the 95 % interval over seeds (Student's t) of rFID, PSNR, SSIM, codebook usage, H_C and gFID; ``rate.png``
(each row's rate-quality curve); and ``commands.md``, the ``restok`` commands that reproduce each cell.
The table holds only what the cells' numbers determine: a rerun, a resume or another split writes the same bytes.

The grid file (YAML)::

    data: embedded:mnist-train        # what every tokenizer trains on (and what its codes are made of)
    eval_data: embedded:mnist-val     # held-out images: reconstruction protocol and the gFID reference
    seeds: [0, 1, 2]
    tokenizer_steps: 2000             # the same for every row
    generator_steps: 2000
    tokenizer: [batch_size=32]        # key=value overrides every row's tokenizer run gets (then its own)
    generator: [batch_size=64]
    eval: {num_images: 1000, per_class: 100, batch_size: 100, inception_weights: FILE, crop: center-only,
           tokens: all,               # all: every budget (the rate curve); full: every token only
           inception_dtype: fp64}     # fp64 as the official evaluator; fp32 is several times faster on a CPU
    tolerance: {parameters: 0.1, steps: 0}    # warn when rows differ by more (relative parameters, steps)
    rows:
      - name: ResTok
        tokenizer: {config: restok-tiny, overrides: [ablation=table2-8]}
        generator: {config: har-tiny}
      - name: TiTok
        tokenizer: {config: titok-tiny-single}
        generator: {config: har-tiny}
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..eval.context import EvalOptions
from ..eval.jobs import GenerationRequest, ReconstructionRequest, ReferenceRequest
from ..eval.plots import plot_comparison
from ..runtime.files import json_text, make_dir, write_text
from ..runtime.inputs import load_yaml, read_json_input, read_text_input
from ..runtime.requests import RequestError
from .config import load_train_config

__all__ = ["ExperimentGrid", "ExperimentRow", "ExperimentRequest", "run_experiment", "rate_points", "TABLE_METRICS"]

log = logging.getLogger("restok.train")

# the table's columns: (key in cell.json, what it is)
TABLE_METRICS = (
    ("rfid", "rFID"),
    ("psnr", "PSNR (dB)"),
    ("ssim", "SSIM"),
    ("codebook_usage", "codebook usage"),
    ("codebook_entropy", "H_C (bits)"),
    ("gfid", "gFID (no guidance)"),
)
_EVAL_KEYS = {"num_images", "per_class", "batch_size", "inception_weights", "inception_dtype", "crop", "tokens"}


@dataclass(frozen=True)
class ExperimentRow:
    """One row: a tokenizer recipe with its overrides, and its generator's."""

    name: str
    tokenizer: str
    generator: str
    tokenizer_overrides: tuple[str, ...] = ()
    generator_overrides: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        """The row's folder name."""
        return re.sub(r"[^A-Za-z0-9._+-]+", "_", self.name).strip("._") or "row"


@dataclass(frozen=True)
class ExperimentGrid:
    """A grid file, checked: rows x seeds at one data, length and evaluation."""

    data: str
    eval_data: str
    rows: tuple[ExperimentRow, ...]
    seeds: tuple[int, ...] = (0,)
    tokenizer_steps: int = 1000
    generator_steps: int = 1000
    tokenizer: tuple[str, ...] = ()
    generator: tuple[str, ...] = ()
    eval: dict[str, Any] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=lambda: {"parameters": 0.1, "steps": 0})

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ExperimentGrid:
        """Read and check a grid file (unknown keys, empty rows, repeated names and bad values are named)."""
        raw = load_yaml(read_text_input(path, "experiment grid"), f"experiment grid {path}")
        try:
            return cls.from_dict(raw)
        except (TypeError, ValueError, KeyError) as e:
            raise RequestError(f"experiment grid {path}: {e}") from None

    @classmethod
    def from_dict(cls, raw: Any) -> ExperimentGrid:
        """The grid a parsed file describes."""
        if not isinstance(raw, dict):
            raise ValueError("must be a mapping (data, eval_data, rows, ...)")
        known = {"data", "eval_data", "rows", "seeds", "tokenizer_steps", "generator_steps", "tokenizer", "generator"}
        unknown = sorted(set(raw) - known - {"eval", "tolerance"})
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; known: {sorted(known | {'eval', 'tolerance'})}")
        for key in ("data", "eval_data", "rows"):
            if key not in raw:
                raise ValueError(f"'{key}' is missing")
        rows = tuple(_row(r, i) for i, r in enumerate(_list(raw["rows"], "rows")))
        if not rows:
            raise ValueError("'rows' is empty")
        slugs = [r.slug for r in rows]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"row names must differ (as folder names): {slugs}")
        seeds = tuple(_int(s, "seeds", 0) for s in _list(raw.get("seeds", [0]), "seeds"))
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"'seeds' must be distinct integers, got {list(seeds)}")
        ev = raw.get("eval") or {}
        if not isinstance(ev, dict) or set(ev) - _EVAL_KEYS:
            raise ValueError(f"'eval' takes {sorted(_EVAL_KEYS)}")
        if str(ev.get("inception_dtype", "fp64")) not in ("fp64", "fp32"):
            raise ValueError("eval.inception_dtype must be fp64 (the official evaluator's) or fp32")
        if str(ev.get("tokens", "all")) not in ("all", "full"):
            raise ValueError(f"eval.tokens must be all or full, got {ev['tokens']!r}")
        tol = {"parameters": 0.1, "steps": 0.0, **(raw.get("tolerance") or {})}
        if set(tol) != {"parameters", "steps"} or not all(isinstance(v, (int, float)) and v >= 0 for v in tol.values()):
            raise ValueError("'tolerance' takes parameters and steps, numbers >= 0")
        return cls(
            data=str(raw["data"]),
            eval_data=str(raw["eval_data"]),
            rows=rows,
            seeds=seeds,
            tokenizer_steps=_int(raw.get("tokenizer_steps", 1000), "tokenizer_steps", 1),
            generator_steps=_int(raw.get("generator_steps", 1000), "generator_steps", 1),
            tokenizer=_strings(raw.get("tokenizer", []), "tokenizer"),
            generator=_strings(raw.get("generator", []), "generator"),
            eval=dict(ev),
            tolerance={k: float(v) for k, v in tol.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """The grid as recorded in ``DIR/experiment.json`` (a rerun under another grid is refused)."""
        return {
            "data": self.data,
            "eval_data": self.eval_data,
            "seeds": list(self.seeds),
            "tokenizer_steps": self.tokenizer_steps,
            "generator_steps": self.generator_steps,
            "tokenizer": list(self.tokenizer),
            "generator": list(self.generator),
            "eval": self.eval,
            "rows": [
                {
                    "name": r.name,
                    "tokenizer": {"config": r.tokenizer, "overrides": list(r.tokenizer_overrides)},
                    "generator": {"config": r.generator, "overrides": list(r.generator_overrides)},
                }
                for r in self.rows
            ],
        }

    def cells(self) -> list[tuple[ExperimentRow, int]]:
        """Every (row, seed), seed by seed (an interrupted grid has whole seeds first)."""
        return [(row, seed) for seed in self.seeds for row in self.rows]


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"'{what}' must be a list, got {value!r}")
    return value


def _int(value: Any, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"'{what}' must be an integer >= {low}, got {value!r}")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = _list(value, what)
    if not all(isinstance(v, str) and "=" in v for v in items):
        raise ValueError(f"'{what}' must be a list of key=value overrides, got {value!r}")
    return tuple(items)


def _row(raw: Any, i: int) -> ExperimentRow:
    if not isinstance(raw, dict) or set(raw) - {"name", "tokenizer", "generator"} or "tokenizer" not in raw:
        raise ValueError(f"row {i} must be a mapping of name, tokenizer: {{config, overrides}}, generator: {{...}}")
    parts = {}
    for key, default in (("tokenizer", None), ("generator", "har-tiny")):
        spec = raw.get(key, {"config": default})
        spec = {"config": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or set(spec) - {"config", "overrides"} or not spec.get("config"):
            raise ValueError(f"row {i}: '{key}' must be a recipe name or {{config, overrides}}")
        parts[key] = (str(spec["config"]), _strings(spec.get("overrides", []), f"rows[{i}].{key}.overrides"))
    name = str(raw.get("name") or parts["tokenizer"][0])
    return ExperimentRow(
        name, parts["tokenizer"][0], parts["generator"][0], parts["tokenizer"][1], parts["generator"][1]
    )


@dataclass(frozen=True, kw_only=True)
class ExperimentRequest:
    """``restok experiment``: a grid file, its output folder, and which of its cells this process runs (every
    ``tasks``-th from ``task``)."""

    grid: Path
    out: Path
    task: int | None = None
    tasks: int | None = None
    device: str = "auto"
    progress: bool = True


# ------------------------------------------------------------------------------------------- one cell
@dataclass
class Cell:
    """One (row, seed) of a grid, in its folder."""

    grid: ExperimentGrid
    row: ExperimentRow
    seed: int
    folder: Path
    device: str = "auto"
    progress: bool = True

    @property
    def tokenizer_run(self) -> list[str]:
        """The tokenizer run's overrides: the grid's, the row's, then the seed and the length."""
        return [*self.grid.tokenizer, *self.row.tokenizer_overrides, f"seed={self.seed}", "trackers=[]"]

    @property
    def generator_run(self) -> list[str]:
        """The generator run's overrides."""
        return [*self.grid.generator, *self.row.generator_overrides, f"seed={self.seed}", "trackers=[]"]

    def options(self) -> EvalOptions:
        """How the cell is evaluated."""
        ev = self.grid.eval
        return EvalOptions(
            device=self.device,
            progress=self.progress,
            batch_size=int(ev.get("batch_size", 32)),
            inception_weights=ev.get("inception_weights"),
            inception_dtype=str(ev.get("inception_dtype", "fp64")),
        )

    def run(self, reference: Path) -> dict[str, Any] | None:
        """Every step not done yet, then ``cell.json``; the cell's record (None on processes but the main one)."""
        from .jobs import ExtractCodesRequest, run_extract_codes, run_train

        f, ev = self.folder, self.grid.eval
        if not (f / "tokenizer" / "final").exists():
            run_train(self._train("tokenizer", self.row.tokenizer, self.grid.data, self.tokenizer_run))
        if not (f / "codes" / "meta.json").exists():
            crop = str(ev.get("crop", "center-only"))
            run_extract_codes(
                ExtractCodesRequest(
                    tokenizer=str(f / "tokenizer" / "final"), data=self.grid.data, out=f / "codes", crop=crop,
                    batch_size=int(ev.get("batch_size", 32)), device=self.device, progress=self.progress,
                )
            )  # fmt: skip
        if not (f / "generator" / "final").exists():
            run_train(self._train("generator", self.row.generator, str(f / "codes"), self.generator_run))
        recon, gen = self._evaluate(reference)
        if recon is None or gen is None:
            return None  # another process of a launch
        record = _cell_record(self, recon, gen)
        write_text(f / "cell.json", json_text(record, str(f / "cell.json")))
        return record

    def _train(self, kind: str, config: str, data: str, overrides: list[str]) -> Any:
        from .jobs import TrainRequest

        out = self.folder / kind
        steps = self.grid.tokenizer_steps if kind == "tokenizer" else self.grid.generator_steps
        resume = (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir())
        return TrainRequest(
            kind=kind, config=config, data=data, out=out, overrides=tuple(overrides), max_steps=steps,
            resume=resume, device=self.device, progress=self.progress,
        )  # fmt: skip

    def _evaluate(self, reference: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The reconstruction protocol at every budget and gFID without guidance (each resumable, each skipped when
        its result exists)."""
        from ..eval.jobs import run_generation, run_reconstruction

        f, ev = self.folder, self.grid.eval
        tok, gen = str(f / "tokenizer" / "final"), str(f / "generator" / "final")
        recon = _read_or(f / "reconstruction.json")
        if recon is None:
            recon = run_reconstruction(
                ReconstructionRequest(
                    tokenizer=tok, data=self.grid.eval_data, out=f / "reconstruction.json", tokens=_tokens(ev),
                    num_images=ev.get("num_images"), options=self.options(),
                )
            )  # fmt: skip
        scored = _read_or(f / "generation.json")
        if scored is None:
            scored = run_generation(
                GenerationRequest(
                    generator=gen, tokenizer=tok, reference=str(reference), out=f / "generation.json",
                    per_class=int(ev.get("per_class", 50)), seed=self.seed, changes={"cfg_scale": 1.0},
                    options=self.options(),
                )
            )  # fmt: skip
        return recon, scored


def _tokens(ev: dict[str, Any]) -> str | None:
    """The budgets the reconstruction protocol scores: ``all`` (the rate curve, default) or ``full`` (every token)."""
    return "all" if str(ev.get("tokens", "all")) == "all" else None


def _read_or(path: Path) -> dict[str, Any] | None:
    """A finished step's result, or None when it has not finished."""
    if not path.exists():
        return None
    try:
        return read_json_input(path, "result", follow_links=False)
    except (OSError, ValueError):
        return None


def _parameters(kind: str, config: str, overrides: Sequence[str], meta: dict[str, Any] | None = None) -> int:
    """Parameters of the model a run builds (counted on the meta device)."""
    from .families import generator_run, tokenizer_run

    cfg = load_train_config(config, kind, list(overrides))
    cls, mc = tokenizer_run(cfg) if kind == "tokenizer" else generator_run(cfg, meta or {})
    return int(cls.parameter_count(mc))


def _cell_record(cell: Cell, recon: dict[str, Any], gen: dict[str, Any]) -> dict[str, Any]:
    """What the table reads of a cell: its settings, sizes and numbers (no times, no paths: the same bytes anywhere)."""
    from ..data.codes import read_meta

    meta = read_meta(cell.folder / "codes")
    curve = rate_points(recon, int(meta["num_tokens"]))
    return {
        "row": cell.row.name,
        "seed": cell.seed,
        "tokenizer": {"config": cell.row.tokenizer, "overrides": cell.tokenizer_run},
        "generator": {"config": cell.row.generator, "overrides": cell.generator_run},
        "steps": {"tokenizer": cell.grid.tokenizer_steps, "generator": cell.grid.generator_steps},
        "parameters": {
            "tokenizer": _parameters("tokenizer", cell.row.tokenizer, cell.tokenizer_run),
            "generator": _parameters("generator", cell.row.generator, cell.generator_run, meta),
        },
        "tokens": int(meta["num_tokens"]),
        "rfid": recon.get("rfid"),
        "psnr": recon.get("psnr"),
        "ssim": recon.get("ssim"),
        "codebook_usage": recon.get("codebook_usage"),
        "codebook_entropy": recon.get("codebook_entropy"),
        "gfid": gen.get("gfid", gen.get("fid")),
        "rate_curve": curve,
    }


def rate_points(recon: dict[str, Any], num_tokens: int) -> list[dict[str, Any]]:
    """A reconstruction result's (tokens, rFID, PSNR, SSIM) points: its rate curve (``eval.tokens: all``), or its one
    point at the full length (``full``: the result records no length of its own)."""
    curve = recon.get("rate_curve") or [{**recon, "tokens": recon.get("tokens") or num_tokens}]
    return [{k: r.get(k) for k in ("tokens", "rfid", "psnr", "ssim")} for r in curve]


# ------------------------------------------------------------------------------------------- the grid
def _interval(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and half-width of the 95 % Student-t interval (None for one value)."""
    if not values:
        return None, None
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return mean, half


def _table(grid: ExperimentGrid, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per grid row: each metric's mean and 95 % interval over seeds, and the row's sizes."""
    out = []
    for row in grid.rows:
        mine = [c for c in cells if c["row"] == row.name]
        entry: dict[str, Any] = {"row": row.name, "seeds": len(mine), "tokens": mine[0]["tokens"]}
        entry.update({f"{k}_parameters": mine[0]["parameters"][k] for k in ("tokenizer", "generator")})
        for key, _ in TABLE_METRICS:
            mean, half = _interval([float(c[key]) for c in mine if c.get(key) is not None])
            entry[key], entry[f"{key}_ci95"] = mean, half
        out.append(entry)
    return out


def _fmt(mean: float | None, half: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4g}" + (f" ± {half:.2g}" if half is not None else "")


def _table_files(grid: ExperimentGrid, rows: list[dict[str, Any]], warnings: list[str]) -> dict[str, str]:
    """``table.json``, ``table.csv`` and ``table.md`` of the grid."""
    buf = io.StringIO()
    columns = list(rows[0])
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    head = ["row", "tokens", "params (tok / gen)", *(title for _, title in TABLE_METRICS)]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        sizes = f"{r['tokenizer_parameters'] / 1e6:.2f}M / {r['generator_parameters'] / 1e6:.2f}M"
        cells = [_fmt(r[k], r[f"{k}_ci95"]) for k, _ in TABLE_METRICS]
        md.append("| " + " | ".join([r["row"], str(r["tokens"]), sizes, *cells]) + " |")
    md += ["", f"Mean ± half-width of the 95 % t interval over {len(grid.seeds)} seed(s) {list(grid.seeds)}; "
           f"{grid.tokenizer_steps} tokenizer and {grid.generator_steps} generator steps per cell; gFID without "
           "guidance.", *(f"- warning: {x}" for x in warnings)]  # fmt: skip
    record = {"grid": grid.to_dict(), "rows": rows, "warnings": warnings}
    return {
        "table.json": json_text(record, "table.json"),
        "table.csv": buf.getvalue(),
        "table.md": "\n".join(md) + "\n",
    }


def _warnings(grid: ExperimentGrid, rows: list[dict[str, Any]]) -> list[str]:
    """Rows whose sizes differ by more than the grid's tolerance (the comparison is then not at equal budget)."""
    out = []
    for kind in ("tokenizer", "generator"):
        sizes = {r["row"]: r[f"{kind}_parameters"] for r in rows}
        lo, hi = min(sizes.values()), max(sizes.values())
        if hi and (hi - lo) / hi > grid.tolerance["parameters"]:
            out.append(
                f"{kind} parameters differ by {(hi - lo) / hi:.0%} across rows (tolerance "
                f"{grid.tolerance['parameters']:.0%}): " + ", ".join(f"{k} {v:,}" for k, v in sizes.items())
            )
    return out


def _commands(grid: ExperimentGrid, grid_file: str, out: Path, device: str) -> str:
    """The ``restok`` commands that reproduce each cell (what ``restok experiment`` runs for it)."""
    lines = ["# The commands of each cell", "", f"All at once: `restok experiment {grid_file} --out {out}`", ""]
    for row, seed in grid.cells():
        c = Cell(grid, row, seed, out / "cells" / row.slug / f"seed-{seed}", device)
        lines += [f"## {row.name}, seed {seed}", "", "```bash", *_cell_commands(c, out), "```", ""]
    return "\n".join(lines)


def _cell_commands(c: Cell, out: Path) -> list[str]:
    """One cell's five commands, as a shell runs them."""
    grid, row, f, ev = c.grid, c.row, c.folder, c.grid.eval
    tok, gen, crop = str(f / "tokenizer/final"), str(f / "generator/final"), str(ev.get("crop", "center-only"))
    inc = ["--inception-weights", str(ev["inception_weights"])] if ev.get("inception_weights") else []
    if str(ev.get("inception_dtype", "fp64")) != "fp64":
        inc += ["--inception-dtype", str(ev["inception_dtype"])]
    steps_t, steps_g = str(grid.tokenizer_steps), str(grid.generator_steps)
    commands = [
        ["train", "tokenizer", "--config", row.tokenizer, "--data", grid.data, "--out", str(f / "tokenizer")]
        + ["--max-steps", steps_t, *c.tokenizer_run],
        ["extract-codes", "--tokenizer", tok, "--data", grid.data, "--out", str(f / "codes"), "--crop", crop],
        ["train", "generator", "--config", row.generator, "--codes", str(f / "codes"), "--out", str(f / "generator")]
        + ["--max-steps", steps_g, *c.generator_run],
        ["eval", "reconstruction", "--tokenizer", tok, "--data", grid.eval_data]
        + (["--tokens", "all"] if _tokens(ev) else [])
        + ["--out", str(f / "reconstruction.json"), *inc],
        ["eval", "generation", "--generator", gen, "--tokenizer", tok, "--reference", str(out / "reference.npz")]
        + ["--per-class", str(ev.get("per_class", 50)), "--seed", str(c.seed), "--cfg-scale", "1"]
        + ["--out", str(f / "generation.json"), *inc],
    ]
    return [shlex.join(["restok", *cmd]) for cmd in commands]


def _task_split(req: ExperimentRequest) -> tuple[int, int]:
    """Which of every N cells this process runs: the request's, else SLURM's array, else all."""
    task, tasks = req.task, req.tasks
    if task is None and tasks is None and "SLURM_ARRAY_TASK_ID" in os.environ:
        first = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        task = int(os.environ["SLURM_ARRAY_TASK_ID"]) - first
        tasks = int(os.environ.get("SLURM_ARRAY_TASK_COUNT", "1"))
    task, tasks = task or 0, tasks or 1
    if not 0 <= task < tasks:
        raise RequestError(f"task {task} is not one of 0..{tasks - 1}")
    return task, tasks


def _check_record(out: Path, grid: ExperimentGrid) -> None:
    """Record the grid in ``experiment.json``, or refuse a folder that holds another grid's cells."""
    f = out / "experiment.json"
    old = _read_or(f)
    if old is not None and old != grid.to_dict():
        changed = sorted(k for k in set(old) | set(grid.to_dict()) if old.get(k) != grid.to_dict().get(k))
        raise RequestError(f"{out} holds another grid's cells ({', '.join(changed)} differ); use another --out")
    if old is None:
        write_text(f, json_text(grid.to_dict(), str(f)))


def run_experiment(req: ExperimentRequest, announce: Callable[[str], None] = lambda _m: None) -> dict[str, Any] | None:
    """Run this process's cells of the grid (each resumed where it stopped), then, when every cell is done, write the
    table; returns it (None while cells are missing or on processes but the main one)."""
    grid = ExperimentGrid.from_file(req.grid)
    out = make_dir(Path(req.out))
    _check_record(out, grid)
    task, tasks = _task_split(req)
    reference = out / "reference.npz"
    if not reference.exists():
        from ..eval.jobs import run_reference

        size = load_train_config(grid.rows[0].tokenizer, "tokenizer", list(grid.rows[0].tokenizer_overrides))
        run_reference(_reference_request(grid, reference, size, req.device, req.progress))
    cells = grid.cells()
    for k, (row, seed) in enumerate(cells):
        folder = out / "cells" / row.slug / f"seed-{seed}"
        if k % tasks != task or (folder / "cell.json").exists():
            continue
        announce(f"[cell {k + 1}/{len(cells)}] {row.name}, seed {seed}")
        Cell(grid, row, seed, make_dir(folder, inside=out), req.device, req.progress).run(reference)
    done = [_read_or(out / "cells" / r.slug / f"seed-{s}" / "cell.json") for r, s in cells]
    if any(d is None for d in done):
        missing = sum(d is None for d in done)
        announce(f"{missing} of {len(cells)} cell(s) not done yet (other tasks?); the table is written when all are")
        return None
    return _write_table(grid, out, [d for d in done if d is not None], req)


def _reference_request(
    grid: ExperimentGrid, out: Path, cfg: Any, device: str, progress: bool = True
) -> ReferenceRequest:
    """The shared gFID reference: ``eval_data`` at the first row's image size."""
    from .families import tokenizer_run

    _, mc = tokenizer_run(cfg)
    ev = grid.eval
    options = EvalOptions(device=device, progress=progress, batch_size=int(ev.get("batch_size", 32)),
                          inception_weights=ev.get("inception_weights"),
                          inception_dtype=str(ev.get("inception_dtype", "fp64")))  # fmt: skip
    return ReferenceRequest(
        data=grid.eval_data, out=out, image_size=mc.image_size, num_images=ev.get("num_images"), options=options
    )


def _write_table(
    grid: ExperimentGrid, out: Path, cells: list[dict[str, Any]], req: ExperimentRequest
) -> dict[str, Any]:
    rows = _table(grid, cells)
    warnings = _warnings(grid, rows)
    for w in warnings:
        log.warning("%s", w)
    files = _table_files(grid, rows, warnings)
    files["commands.md"] = _commands(grid, str(req.grid), out, req.device)
    curves = [
        {"tokenizer": r.name, "tokens": k, **{m: _mean([p.get(m) for c in cells if c["row"] == r.name
                                                        for p in c["rate_curve"] if p["tokens"] == k])
                                             for m in ("rfid", "psnr", "ssim")}}
        for r in grid.rows
        for k in sorted({p["tokens"] for c in cells if c["row"] == r.name for p in c["rate_curve"]})
    ]  # fmt: skip
    plot_comparison(out / "rate.png", curves)
    for name, text in files.items():
        write_text(out / name, text)
    return {"rows": rows, "warnings": warnings}


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None
