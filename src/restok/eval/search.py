"""Guidance search: the sampling recipe of a generator, found as the official release found its own
(``sample_c2i_ddp_cfg_search.py``; the paper's Tab. 6): gFID, IS, precision and recall of every point of a grid of
guidance scale x schedule x start x top-k x top-p x temperature, under the generation protocol of
:mod:`restok.evaluation`, optionally refined around the best point at more samples per class.

Every point is one ``restok eval generation`` run with its own work folder, so a killed search resumes point by
point (and inside a point, batch by batch), and each point is split over the processes of a torchrun launch. The
table is written as CSV and JSON after every point; ``best.json`` holds the winning recipe in the form
``--sampling best.json`` and :meth:`restok.SamplingConfig.load` take.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..hub.files import read_config_file
from ..runtime.files import make_dir, remove_stale_temporaries, write_json, write_text
from ..runtime.inputs import read_json_input
from ..runtime.processes import Processes
from ..sampling import CFG_SCHEDULES, SAMPLING_FIELDS, SamplingConfig
from .context import EvalContext, EvalOptions
from .generation import generate_and_score
from .inception import InceptionFeatures
from .plots import plot_search
from .protocol import EvaluationError
from .references import load_reference

if TYPE_CHECKING:
    from ..models.har import HARGenerator
    from ..models.tokenizer import Tokenizer

__all__ = ["SearchGrid", "search_guidance", "search_over", "refined_grid", "TABLE_COLUMNS", "MAX_SEARCH_POINTS"]

# Each point of a search is a generation evaluation of its own; a grid larger than this is a typo far more often than
# a plan (``--max-points`` raises it).
MAX_SEARCH_POINTS = 1000

TABLE_COLUMNS = (
    "stage",
    "point",
    "cfg_scale",
    "cfg_schedule",
    "cfg_start",
    "top_k",
    "top_p",
    "temperature",
    "per_class",
    "num_samples",
    "gfid",
    "inception_score",
    "precision",
    "recall",
    "seconds",
)


class SearchGrid:
    """The axes of a search: for each sampling setting (a field of :class:`~restok.SamplingConfig`), the values to try;
    an axis not given holds the setting's default (the guidance scale: 1.5, 2 and 3). Every combination is a point
    (``cfg_start`` matters only to the ``step`` schedule, and the schedule not at all without guidance, so such
    duplicates are dropped)."""

    DEFAULTS: dict[str, tuple[Any, ...]] = {"cfg_scale": (1.5, 2.0, 3.0)}

    def __init__(self, **axes: Any) -> None:
        unknown = sorted(set(axes) - set(SAMPLING_FIELDS))
        if unknown:
            raise ValueError(f"unknown search axis(es) {unknown}; known: {sorted(SAMPLING_FIELDS)}")
        self.axes = {
            name: tuple(axes[name]) if name in axes else self.DEFAULTS.get(name, (f.default,))
            for name, f in SAMPLING_FIELDS.items()
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchGrid) and self.axes == other.axes

    def __repr__(self) -> str:
        return f"SearchGrid({', '.join(f'{k}={v}' for k, v in self.axes.items())})"

    def size(self) -> int:
        """Combinations of the axes' values (before duplicates are dropped), computed without listing them."""
        return math.prod(len(values) for values in self.axes.values())

    def points(self, max_points: int = MAX_SEARCH_POINTS) -> list[SamplingConfig]:
        """Every distinct recipe of the grid, in axis order; a ValueError names an empty axis, a bad value, or a grid
        of more than ``max_points`` combinations (refused before any is listed: each point is a full evaluation)."""
        empty = [name for name, values in self.axes.items() if not values]
        if empty:
            raise ValueError(f"the search grid has no values for {', '.join(empty)}")
        if self.size() > max_points:
            shape = " x ".join(f"{len(v)} {k}" for k, v in self.axes.items() if len(v) > 1)
            raise ValueError(
                f"the search grid has {self.size():,} points ({shape}), more than the {max_points:,} allowed; "
                "narrow an axis, or raise the limit with --max-points"
            )
        unknown = sorted(set(self.axes["cfg_schedule"]) - set(CFG_SCHEDULES))
        if unknown:
            raise ValueError(f"unknown guidance schedule(s) {unknown}; choose from {sorted(CFG_SCHEDULES)}")
        out: dict[SamplingConfig, None] = {}  # insertion-ordered set
        for values in itertools.product(*self.axes.values()):
            point = dict(zip(self.axes, values))
            if float(point["cfg_scale"]) == 1.0:
                point.update(cfg_schedule="constant", cfg_start=0.0)
            elif point["cfg_schedule"] != "step":
                point["cfg_start"] = 0.0
            out.setdefault(SamplingConfig(**point), None)
        return list(out)

    @classmethod
    def from_file(cls, path: str | Path | None, **axes: Any) -> SearchGrid:
        """The axes of a YAML/JSON grid file (none: the defaults), then ``axes`` changing it (None values ignored)."""
        data = dict(read_config_file(path)) if path else {}
        data.update({k: v for k, v in axes.items() if v is not None})
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchGrid:
        """From a mapping of axis -> value or list of values (e.g. a YAML grid file); unknown axes are named."""
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else (v,) for k, v in data.items()})

    def to_dict(self) -> dict[str, list[Any]]:
        """Axis -> list of values."""
        return {k: list(v) for k, v in self.axes.items()}


def _axis(name: str) -> property:
    """The values of one axis, as an attribute (``grid.cfg_scale``)."""
    return property(lambda self: self.axes[name], doc=f"The values of the {name} axis.")


for _name in SAMPLING_FIELDS:  # one attribute per sampling setting: grid.cfg_scale, grid.top_p, ...
    setattr(SearchGrid, _name, _axis(_name))


def refined_grid(best: SamplingConfig, grid: SearchGrid) -> SearchGrid:
    """A finer grid around ``best``: its schedule, top-k/top-p and temperature, and the guidance scale (and the
    ``step`` start) at half the first grid's spacing on either side."""

    def around(value: float, axis: tuple[float, ...], default: float, lo: float, hi: float) -> tuple[float, ...]:
        values = sorted({float(v) for v in axis})
        gaps = [b - a for a, b in zip(values, values[1:]) if b > a]
        d = (min(gaps) if gaps else default) / 2
        return tuple(sorted({round(min(hi, max(lo, value + s * d)), 6) for s in (-1, 0, 1)}))

    return SearchGrid(
        cfg_scale=around(best.cfg_scale, grid.cfg_scale, 0.5, 1.0, 100.0),
        cfg_schedule=(best.cfg_schedule,),
        cfg_start=around(best.cfg_start, grid.cfg_start, 0.25, 0.0, 1.0)
        if best.cfg_schedule == "step"
        else (best.cfg_start,),
        top_k=(best.top_k,),
        top_p=(best.top_p,),
        temperature=(best.temperature,),
    )


def _write_tables(out: Path, rows: list[dict[str, Any]]) -> None:
    """``table.csv`` and ``table.json`` of every point evaluated so far."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(TABLE_COLUMNS), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in TABLE_COLUMNS})
    write_text(out / "table.csv", buf.getvalue())
    write_json(out / "table.json", rows)


def _evaluate_point(
    ctx: EvalContext,
    reference: str | Path,
    path: Path,
    sp: SamplingConfig,
    per_class: int,
    seed: int,
) -> dict[str, Any] | None:
    """One point's table row (None on processes other than the main one): a generation evaluation of its own."""
    result = generate_and_score(ctx.quiet(), reference, path, per_class=per_class, seed=seed, sampling=sp)
    if result is None:
        return None
    return {
        **sp.to_dict(),
        "per_class": per_class,
        "num_samples": result["num_samples"],
        "gfid": result["gfid"],
        "inception_score": result.get("inception_score"),
        "precision": result["precision"],
        "recall": result["recall"],
        "seconds": round(result["settings"]["seconds"], 3),
        "result": str(path),
    }


def _recipe_of(row: dict[str, Any]) -> SamplingConfig:
    """The sampling recipe a table row was evaluated with."""
    return SamplingConfig.from_dict({k: row[k] for k in SAMPLING_FIELDS})


def _finer_points(
    out: Path, rows: list[dict[str, Any]], grid: SearchGrid, processes: Processes
) -> list[SamplingConfig]:
    """The second stage's points: the main process writes the finer grid around stage 1's best, every process reads
    it."""
    if processes.main:
        finer = refined_grid(_recipe_of(_best([r for r in rows if r["stage"] == 1])), grid)
        write_json(out / "stage2-grid.json", finer.to_dict())
    processes.wait()
    return SearchGrid.from_dict(read_json_input(out / "stage2-grid.json", "search grid", follow_links=False)).points()


def _write_best(out: Path, best: dict[str, Any], seed: int, batch_size: int) -> None:
    """``best.json``: the winning recipe in the form ``--sampling best.json`` reads, its figures and how to reproduce
    it."""
    write_json(
        out / "best.json",
        {
            "sampling": _recipe_of(best).to_dict(),
            **{
                k: best[k]
                for k in ("gfid", "inception_score", "precision", "recall", "per_class", "num_samples", "stage")
            },
            "seed": seed,
            "batch_size": batch_size,
            "result": best["result"],
            "reproduce": "restok eval generation --sampling best.json --per-class "
            f"{best['per_class']} --seed {seed} --batch-size {batch_size}",
        },
    )


def _stage(
    ctx: EvalContext,
    reference: str | Path,
    out: Path,
    stage: tuple[int, list[SamplingConfig], int],
    seed: int,
    rows: list[dict[str, Any]],
    log: Callable[[str], None] | None,
) -> None:
    """Evaluate one stage's points into ``OUT/stageN/``, adding their rows and rewriting the tables after each."""
    number, points, per_class = stage
    bar = ctx.bar(points, f"guidance search, stage {number}", unit="point")
    folder = make_dir(out / f"stage{number}", inside=out)  # a link planted there never receives the points
    if ctx.processes.main:
        remove_stale_temporaries(folder)  # what a killed run was writing
    for i, sp in enumerate(bar):
        t0 = time.perf_counter()
        row = _evaluate_point(ctx, reference, folder / f"point-{i:04d}.json", sp, per_class, seed)
        if row is None:  # not the main process
            continue
        rows.append({"stage": number, "point": i, **row})
        _write_tables(out, rows)
        bar.set_postfix(gfid=f"{row['gfid']:.3g}", best=f"{min(r['gfid'] for r in rows):.3g}")
        if log is not None:
            log(
                f"stage {number} point {i + 1}/{len(points)}: {sp.to_dict()} -> gFID {row['gfid']:.4g} "
                f"({time.perf_counter() - t0:.1f} s)"
            )
    bar.close()


def search_over(
    ctx: EvalContext,
    reference: str | Path,
    out: Path,
    grid: SearchGrid,
    *,
    per_class: int = 5,
    refine: bool = False,
    refine_per_class: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    max_points: int = MAX_SEARCH_POINTS,
) -> dict[str, Any] | None:
    """The guidance search over ``ctx`` -- its generator and tokenizer (see :func:`search_guidance`); ``log`` hears
    the plan and each point's result on the main process."""
    if per_class < 1 or (refine_per_class is not None and refine_per_class < 1):
        raise EvaluationError("samples per class must be >= 1")
    stages = [(1, grid.points(max_points), per_class)]
    log = log if ctx.processes.main else None
    if log is not None:
        finer = f", then a finer grid at {refine_per_class or 4 * per_class} per class" if refine else ""
        classes = ctx.generator.config.num_classes
        log(f"guidance search: {len(stages[0][1])} point(s) x {per_class} samples per class x {classes} classes{finer}")
    ref = load_reference(reference, ctx.inception)  # fails now, not after hours, if the file lacks what a metric needs
    if ref["activations"].shape[0] <= 3:
        raise EvaluationError(
            f"reference {reference} has {ref['activations'].shape[0]} images; precision/recall need more than 3"
        )
    plan = dict(per_class=per_class, refine=refine, refine_per_class=refine_per_class, seed=seed)
    write_json(out / "search.json", {"grid": grid.to_dict(), **plan, "batch_size": ctx.batch_size})
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for stage in stages:  # a second stage is appended after the first when refining
        _stage(ctx, reference, out, stage, seed, rows, log)
        if refine and stage[0] == 1:
            stages.append((2, _finer_points(out, rows, grid, ctx.processes), refine_per_class or 4 * per_class))
    if not ctx.processes.main:
        return None
    best = _best([r for r in rows if r["stage"] == max(r["stage"] for r in rows)])
    _write_best(out, best, seed, ctx.batch_size)
    plot = plot_search(out / "search.png", rows)
    return {"best": best, "rows": rows, "plot": str(plot) if plot else None, "seconds": time.perf_counter() - t_start}


def search_guidance(
    generator: HARGenerator,
    tokenizer: Tokenizer,
    inception: InceptionFeatures,
    reference: str | Path,
    out: str | Path,
    grid: SearchGrid,
    per_class: int = 5,
    refine: bool = False,
    refine_per_class: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    processes: Processes | None = None,
    log: Callable[[str], None] | None = None,
    max_points: int = MAX_SEARCH_POINTS,
) -> dict[str, Any] | None:
    """Evaluate every point of ``grid`` (then, with ``refine``, of a finer grid around the best at ``refine_per_class``
    samples per class) into the folder ``out``: ``table.csv``, ``table.json``, ``best.json``, ``search.png``, and one
    evaluation work folder per point. Returns ``{"best": row, "rows": [...]}`` on the main process."""
    options = EvalOptions(batch_size=batch_size)
    ctx = EvalContext(processes, generator.device, inception, options, tokenizer=tokenizer, generator=generator)
    return search_over(
        ctx,
        reference,
        Path(out),
        grid,
        per_class=per_class,
        refine=refine,
        refine_per_class=refine_per_class,
        seed=seed,
        log=log,
        max_points=max_points,
    )


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of lowest gFID (ties: the earlier point)."""
    return min(rows, key=lambda r: (r["gfid"], r["stage"], r["point"]))
