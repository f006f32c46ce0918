"""Training checkpoints: ``RUN/checkpoints/step-<8 digits>/`` folders written whole or not at all, the newest kept,
damage detected on resume (``files.json`` sizes and SHA-256), and the global RNG state."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..runtime.files import disk_full_error, fsync_dir, make_dir
from ..runtime.hashing import file_sha256
from ..runtime.inputs import read_json_input
from .errors import TrainingError

__all__ = ["CHECKPOINT_RE", "CheckpointDir", "rng_state", "set_rng_state"]

CHECKPOINT_RE = re.compile(r"^step-(\d{8})$")


def _remove(path: Path) -> None:
    """Delete a folder of ours, or only the link when ``path`` is a symbolic link (never what it points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


class CheckpointDir:
    """``RUN/checkpoints/step-<8-digit step>/`` folders, each written under a temporary name and renamed when
    complete (so a crash mid-save leaves the previous ones intact); the newest ``keep`` are kept, and those of
    ``keep_steps`` always. Each holds ``inference_config.json``, the config of the model its EMA weights make
    (what :func:`restok.train.export.export_checkpoint` writes out)."""

    def __init__(self, run: Path, keep: int, keep_steps: tuple[int, ...] = ()) -> None:
        self.run = run
        self.root = run / "checkpoints"
        self.keep = keep
        self.keep_steps = frozenset(keep_steps)

    def complete(self) -> list[tuple[int, Path]]:
        """(step, folder) of every complete checkpoint, oldest first."""
        if not self.root.is_dir():
            return []
        out = []
        for d in self.root.iterdir():
            m = CHECKPOINT_RE.match(d.name)
            if m and not d.is_symlink() and d.is_dir() and (d / "trainer.pt").exists():  # links are not ours
                out.append((int(m.group(1)), d))
        return sorted(out)

    def newest(self) -> tuple[int, Path] | None:
        """The newest complete checkpoint, if any."""
        c = self.complete()
        return c[-1] if c else None

    def find(self, step: int) -> Path:
        """The complete checkpoint of ``step``, or a TrainingError listing the ones there are."""
        for s, d in self.complete():
            if s == step:
                return d
        have = [s for s, _ in self.complete()]
        raise TrainingError(f"{self.root} has no complete checkpoint of step {step}; it has {have or 'none'}")

    def save(
        self,
        step: int,
        tensors: dict[str, dict[str, torch.Tensor]],
        trainer_state: dict[str, Any],
        inference_config: dict[str, Any] | None = None,
    ) -> Path:
        """Write ``<name>.safetensors`` for each tensor dict, ``trainer.pt`` and ``inference_config.json``; then
        rename into place."""
        make_dir(self.root, inside=self.run)  # a planted link never receives the checkpoints
        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".tmp-step-{step:08d}-{os.getpid()}"
        _remove(tmp)
        tmp.mkdir()
        try:
            self._write(tmp, tensors, trainer_state, inference_config)
        except (OSError, RuntimeError) as e:
            shutil.rmtree(tmp, ignore_errors=True)  # what was written frees the disk again; older checkpoints stay
            if disk_full_error(e, final) is not None:
                raise TrainingError(
                    f"disk full (or a file size limit)? could not write checkpoint {final} "
                    f"({' '.join(str(e).split())[:200]}); the earlier checkpoints are intact"
                ) from None
            raise
        _remove(final)  # the same step saved again (e.g. final after a periodic save), or a link planted there
        os.replace(tmp, final)
        fsync_dir(self.root)
        for s, old in self.complete()[: -self.keep]:
            if s not in self.keep_steps:
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return final

    @staticmethod
    def _write(
        tmp: Path,
        tensors: dict[str, dict[str, torch.Tensor]],
        trainer_state: dict[str, Any],
        inference_config: dict[str, Any] | None,
    ) -> None:
        """The files of one checkpoint into ``tmp``, each fsynced, and ``files.json`` recording their sizes and
        hashes."""
        for name, t in tensors.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in t.items()}, str(tmp / f"{name}.safetensors"))
        torch.save(trainer_state, tmp / "trainer.pt")
        if inference_config is not None:
            (tmp / "inference_config.json").write_text(json.dumps(inference_config, indent=2))
        files = {}
        for f in sorted(tmp.iterdir()):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
            files[f.name] = {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
        # what tells a complete checkpoint from a damaged one (truncated or zeroed files) when resuming
        (tmp / "files.json").write_text(json.dumps(files, indent=2))
        with open(tmp / "files.json", "rb") as fh:
            os.fsync(fh.fileno())

    @staticmethod
    def damage(folder: Path) -> str | None:
        """What is wrong with a checkpoint's files (missing, other size, other SHA-256 than ``files.json`` says), or
        None."""
        record = folder / "files.json"
        if not record.is_file():
            return None  # written before files.json existed: only loading can tell
        try:
            files = read_json_input(record, "checkpoint file list", follow_links=False)
        except (OSError, ValueError) as e:
            return f"files.json unreadable ({e})"
        for name, want in files.items():
            f = folder / name
            if not f.is_file():
                return f"{name} is missing"
            if f.stat().st_size != want["bytes"]:
                return f"{name} has {f.stat().st_size} bytes, {want['bytes']} were written"
            if file_sha256(f) != want["sha256"]:
                return f"{name} does not have the content that was written (SHA-256 differs)"
        return None

    @staticmethod
    def load(folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """Tensor dicts and the trainer state of one checkpoint (``weights_only`` unpickling)."""
        problem = CheckpointDir.damage(folder)
        if problem:
            raise TrainingError(f"checkpoint {folder} is damaged: {problem}")
        try:
            tensors = {f.stem: load_file(str(f)) for f in folder.glob("*.safetensors")}
            state = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - SafetensorError, UnpicklingError, EOFError, RuntimeError
            raise TrainingError(f"checkpoint {folder} is damaged: {type(e).__name__}: {e}") from None
        if not isinstance(state, dict) or "step" not in state:
            raise TrainingError(f"checkpoint {folder} is damaged: trainer.pt holds no trainer state")
        return tensors, state

    def load_newest_intact(self) -> tuple[int, Path, dict[str, dict[str, torch.Tensor]], dict[str, Any]] | None:
        """The newest checkpoint that loads, falling back past damaged ones with a warning naming what was wrong."""
        for step, folder in reversed(self.complete()):
            try:
                tensors, state = self.load(folder)
            except TrainingError as e:
                logging.getLogger("restok.train").warning("%s; falling back to an older checkpoint", e)
                continue
            return step, folder, tensors, state
        return None


def rng_state() -> dict[str, Any]:
    """Global RNG states (saved for completeness; every step reseeds them anyway)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
