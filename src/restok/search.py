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
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .evaluation import EvaluationError, evaluate_generation, load_reference
from .inception import InceptionFeatures
from .io import write_json, write_text
from .sampling import CFG_SCHEDULES, SamplingConfig

__all__ = ["SearchGrid", "search_guidance", "refined_grid", "TABLE_COLUMNS"]

TABLE_COLUMNS = ("stage", "point", "cfg_scale", "cfg_schedule", "cfg_start", "top_k", "top_p", "temperature",
                 "per_class", "num_samples", "gfid", "inception_score", "precision", "recall", "seconds")


@dataclass(frozen=True)
class SearchGrid:
    """The axes of a search; every combination is a point (``cfg_start`` matters only to the ``step`` schedule, and the
    schedule not at all without guidance, so such duplicates are dropped)."""

    cfg_scale: tuple[float, ...] = (1.5, 2.0, 3.0)
    cfg_schedule: tuple[str, ...] = ("constant",)
    cfg_start: tuple[float, ...] = (0.0,)
    top_k: tuple[int, ...] = (0,)
    top_p: tuple[float, ...] = (1.0,)
    temperature: tuple[float, ...] = (1.0,)

    def points(self) -> list[SamplingConfig]:
        """Every distinct recipe of the grid, in axis order; a ValueError names an empty axis or a bad value."""
        axes = {name: tuple(getattr(self, name)) for name in ("cfg_scale", "cfg_schedule", "cfg_start", "top_k", "top_p", "temperature")}
        empty = [name for name, values in axes.items() if not values]
        if empty:
            raise ValueError(f"the search grid has no values for {', '.join(empty)}")
        unknown = sorted(set(axes["cfg_schedule"]) - set(CFG_SCHEDULES))
        if unknown:
            raise ValueError(f"unknown guidance schedule(s) {unknown}; choose from {sorted(CFG_SCHEDULES)}")
        out: list[SamplingConfig] = []
        for scale, schedule, start, k, p, t in itertools.product(*axes.values()):
            if float(scale) == 1.0:
                schedule, start = "constant", 0.0
            elif schedule != "step":
                start = 0.0
            point = SamplingConfig(cfg_scale=scale, cfg_schedule=schedule, cfg_start=start, top_k=k, top_p=p, temperature=t)
            if point not in out:
                out.append(point)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchGrid":
        """From a mapping of axis -> value or list of values (e.g. a YAML grid file); unknown axes are named."""
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown search axis(es) {unknown}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else (v,) for k, v in data.items()})

    def to_dict(self) -> dict[str, list[Any]]:
        """Axis -> list of values."""
        return {k: list(getattr(self, k)) for k in self.__dataclass_fields__}


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
        cfg_start=around(best.cfg_start, grid.cfg_start, 0.25, 0.0, 1.0) if best.cfg_schedule == "step" else (best.cfg_start,),
        top_k=(best.top_k,), top_p=(best.top_p,), temperature=(best.temperature,),
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


def _plot(out: Path, rows: list[dict[str, Any]]) -> Path | None:
    """gFID and IS against the guidance scale, one line per schedule (and step start); None without matplotlib."""
    try:
        from .viz import _plt, _save
    except ImportError:
        return None
    try:
        plt = _plt()
    except Exception:  # noqa: BLE001 - matplotlib missing
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        key = r["cfg_schedule"] + (f" from {r['cfg_start']:g}" if r["cfg_schedule"] == "step" else "") + f" (stage {r['stage']})"
        groups.setdefault(key, []).append(r)
    for key, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["cfg_scale"])
        xs = [r["cfg_scale"] for r in rs]
        axes[0].plot(xs, [r["gfid"] for r in rs], marker="o", label=key)
        if all(r.get("inception_score") is not None for r in rs):
            axes[1].plot(xs, [r["inception_score"] for r in rs], marker="o", label=key)
    axes[0].set(xlabel="guidance scale", ylabel="gFID (lower is better)", title="gFID")
    axes[1].set(xlabel="guidance scale", ylabel="Inception Score", title="IS" + ("" if any(r.get("inception_score") for r in rows) else " (needs an Inception with logits)"))
    axes[0].legend(fontsize=7)
    path = out / "search.png"
    _save(fig, path)
    return path


def search_guidance(
    generator: Any,
    tokenizer: Any,
    inception: InceptionFeatures,
    reference: str | Path,
    out: str | Path,
    grid: SearchGrid,
    per_class: int = 5,
    refine: bool = False,
    refine_per_class: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Evaluate every point of ``grid`` (then, with ``refine``, of a finer grid around the best at ``refine_per_class``
    samples per class) into the folder ``out``: ``table.csv``, ``table.json``, ``best.json``, ``search.png``, and one
    evaluation work folder per point. Returns ``{"best": row, "rows": [...]}`` on the main process."""
    from tqdm.auto import tqdm

    out = Path(out)
    if per_class < 1 or (refine_per_class is not None and refine_per_class < 1):
        raise EvaluationError("samples per class must be >= 1")
    points = grid.points()
    ref = load_reference(reference, inception)  # fails now, not after hours, if the file lacks what a metric needs
    if ref["activations"].shape[0] <= 3:
        raise EvaluationError(f"reference {reference} has {ref['activations'].shape[0]} images; precision/recall need more than 3")
    write_json(out / "search.json", {"grid": grid.to_dict(), "per_class": per_class, "refine": refine,
                                     "refine_per_class": refine_per_class, "seed": seed, "batch_size": batch_size})
    rows: list[dict[str, Any]] = []
    stages = [(1, points, per_class)]
    t_start = time.perf_counter()
    stage_index = 0
    while stage_index < len(stages):
        stage, pts, n = stages[stage_index]
        bar = tqdm(pts, disable=not progress, desc=f"guidance search, stage {stage}", unit="point")
        for i, sp in enumerate(bar):
            t0 = time.perf_counter()
            result = evaluate_generation(
                generator, tokenizer, inception, reference, out / f"stage{stage}" / f"point-{i:04d}.json", per_class=n,
                batch_size=batch_size, seed=seed, sampling=sp, rank=rank, world=world, barrier=barrier, progress=False,
            )
            if result is None:  # not the main process
                continue
            row = {"stage": stage, "point": i, **sp.to_dict(), "per_class": n, "num_samples": result["num_samples"],
                   "gfid": result["gfid"], "inception_score": result.get("inception_score"), "precision": result["precision"],
                   "recall": result["recall"], "seconds": round(result["settings"]["seconds"], 3),
                   "result": str(out / f"stage{stage}" / f"point-{i:04d}.json")}
            rows.append(row)
            _write_tables(out, rows)
            bar.set_postfix(gfid=f"{row['gfid']:.3g}", best=f"{min(r['gfid'] for r in rows):.3g}")
            if log is not None:
                log(f"stage {stage} point {i + 1}/{len(pts)}: {sp.to_dict()} -> gFID {row['gfid']:.4g} "
                    f"({time.perf_counter() - t0:.1f} s)")
        bar.close()
        if refine and stage == 1:
            best1 = _best([r for r in rows if r["stage"] == 1]) if rank == 0 else None
            if rank == 0:
                finer = refined_grid(SamplingConfig.from_dict({k: best1[k] for k in SamplingConfig.__dataclass_fields__}), grid)
                write_json(out / "stage2-grid.json", finer.to_dict())
            if barrier is not None:
                barrier()
            finer = SearchGrid.from_dict(json.loads((out / "stage2-grid.json").read_text()))
            stages.append((2, finer.points(), refine_per_class or 4 * per_class))
        stage_index += 1
    if rank != 0:
        return None
    final_stage = max(r["stage"] for r in rows)
    best = _best([r for r in rows if r["stage"] == final_stage])
    write_json(out / "best.json", {"sampling": {k: best[k] for k in SamplingConfig.__dataclass_fields__},
                                   **{k: best[k] for k in ("gfid", "inception_score", "precision", "recall", "per_class", "num_samples", "stage")},
                                   "seed": seed, "batch_size": batch_size, "result": best["result"],
                                   "reproduce": "restok eval generation --sampling best.json --per-class "
                                                f"{best['per_class']} --seed {seed} --batch-size {batch_size}"})
    plot = _plot(out, rows)
    return {"best": best, "rows": rows, "plot": str(plot) if plot else None, "seconds": time.perf_counter() - t_start}


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of lowest gFID (ties: the earlier point)."""
    return min(rows, key=lambda r: (r["gfid"], r["stage"], r["point"]))
