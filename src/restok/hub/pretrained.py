"""Loading and saving as the Hugging Face ecosystem does (timm/diffusers/transformers' API), for every model family.

:class:`PretrainedModel` gives ``from_pretrained`` (this package's format and each family's foreign layouts, embedded
model names, local files, Hub ids, with the ``huggingface_hub`` keyword arguments and ``device``/``torch_dtype``),
``save_pretrained`` (with a model card), ``push_to_hub``, ``.device``/``.dtype`` and a provenance record. A model
class declares what it is (its registry entry, :mod:`restok.core.registry`) and builds itself from its config;
loading deals only in ``(config, state dict)``, as timm's ``build_model_with_cfg`` does, and asks the registry which
family a checkpoint belongs to.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn as nn

from ..core.fields import config_from_dict
from ..core.registry import DEFAULT_FAMILIES, Layout, identify_checkpoint
from ..core.release import ReleaseError, zero_sized
from ..runtime.files import write_json
from ..runtime.hashing import state_dict_sha256
from ..runtime.memory import available_memory, format_bytes
from ..runtime.precision import parse_dtype
from ..runtime.processes import resolve_device
from .cards import model_card
from .files import FORMAT_VERSION, CheckpointError, read_config_file, read_json, read_state_dict, save_checkpoint
from .keys import check_finite, check_state_dict
from .provenance import Provenance
from .push import push_folder_to_hub, temporary_folder
from .resolve import ResolvedCheckpoint, resolve_checkpoint

__all__ = ["PretrainedModel"]

M = TypeVar("M", bound="PretrainedModel")


_PARAMETER_COUNTS: dict[tuple[type, Any], int] = {}  # (model class, config) -> parameters


class PretrainedModel(nn.Module):
    """Shared loading/saving of every registered model family (:class:`~restok.ResTok`, :class:`~restok.HARGenerator`,
    ...)."""

    # The registry entry (see restok.core.registry): declared by each family.
    family: ClassVar[str]
    title: ClassVar[str]  # the family's usual name ("TiTok"), for help texts and tables
    kind: ClassVar[str]  # "tokenizer" or "generator"
    config_class: ClassVar[type]
    presets: ClassVar[Mapping[str, Any]] = {}
    layouts: ClassVar[tuple[Layout, ...]] = ()  # foreign checkpoint layouts it reads (an official release's)
    ignored_prefixes: ClassVar[tuple[str, ...]] = ()  # checkpoint keys it may drop (official training-only heads)
    description: ClassVar[str] = ""  # what it is, for model cards
    # Submodules kept in float32 when the model is cast to another float dtype (transformers'
    # ``_keep_in_fp32_modules``): the official code runs them in float32 whatever the rest's precision.
    keep_in_fp32_modules: ClassVar[tuple[str, ...]] = ()

    config: Any
    provenance: Provenance

    # -------------------------------------------------------------------------------- dtype and device
    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point dtype of the parameters (those of :attr:`keep_in_fp32_modules` stay float32)."""
        kept = {
            id(p)
            for name in self.keep_in_fp32_modules
            if (m := getattr(self, name, None)) is not None
            for p in m.parameters()
        }
        for p in self.parameters():
            if id(p) not in kept and p.is_floating_point():
                return p.dtype
        return torch.float32

    def _apply(self, fn: Any, recurse: bool = True) -> PretrainedModel:
        super()._apply(fn, recurse)
        for name in self.keep_in_fp32_modules:
            m = getattr(self, name, None)
            if m is not None and any(p.is_floating_point() and p.dtype != torch.float32 for p in m.parameters()):
                m.float()
        return self

    def fingerprint(self) -> str:
        """SHA-256 of the weights file this model was loaded from, else of its tensors in memory."""
        return self.provenance.weights_sha256() or state_dict_sha256(self.state_dict())

    def identity(self) -> dict[str, Any]:
        """What to record beside an output made with this model: provenance, weights hash and config."""
        return {**self.provenance.to_dict(), "sha256": self.fingerprint(), "config": self.config.to_dict()}

    @classmethod
    def parameter_count(cls, config: Any) -> int:
        """Parameters a model of ``config`` has, counted on the meta device (no memory, no initialisation)."""
        # a count is a pure function of the class and its frozen config, and every load and training run asks for
        # one before allocating (check_fits): building the skeleton once per process is enough
        key = (cls, config)
        try:
            return _PARAMETER_COUNTS[key]
        except KeyError:
            pass
        except TypeError:  # a config with mutable fields cannot be a key: counted each time
            key = None
        with torch.device("meta"):
            n = sum(p.numel() for p in cls(config).parameters())
        if key is not None:
            _PARAMETER_COUNTS[key] = n
        return n

    @classmethod
    def check_fits(
        cls,
        config: Any,
        device: str | torch.device | None = None,
        bytes_per_parameter: int = 4,
        what: str = "its float32 weights",
    ) -> int:
        """Refuse, before allocating, a model of ``config`` whose parameters (times ``bytes_per_parameter``) need more
        memory than ``device`` has free; returns the parameter count."""
        n = cls.parameter_count(config)
        need, free = n * bytes_per_parameter, available_memory(resolve_device(device or "cpu"))
        if free is not None and need > free:
            raise MemoryError(
                f"a {cls.family} {cls.kind} with this config has {n:,} parameters: {what} need "
                f"{format_bytes(need)}, more than the {format_bytes(free)} free on {resolve_device(device or 'cpu')} "
                f"({config.summary() if hasattr(config, 'summary') else config})"
            )
        return n

    @classmethod
    def from_preset(cls: type[M], name: str, **overrides: Any) -> M:
        """A randomly initialised model from one of this family's named presets, with optional field overrides."""
        if name not in cls.presets:
            raise ValueError(f"unknown {cls.kind} preset {name!r}; available: {sorted(cls.presets)}")
        config = cls.presets[name].replace(**overrides)
        cls.check_fits(config)
        return cls(config)

    # -------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls: type[M],
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: Any = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        proxies: dict[str, str] | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        device: str | torch.device | None = None,
        map_location: str | torch.device | None = None,
        torch_dtype: torch.dtype | str | None = None,
        resume_download: bool | None = None,
    ) -> M:
        """Load from an embedded model name, a local directory or weights file, or a Hugging Face Hub repo id, in this
        package's format or one of the family's layouts (training-only keys dropped, any other mismatch named key by
        key).

        Args:
            pretrained_model_name_or_path: e.g. ``"xushu-me/restok_l_128.r256_in1k"``, ``"runs/tok/final"``,
                ``"ema_model/pytorch_model.bin"`` or ``"restok-tiny-mnist"``.
            config: a config dataclass, a dict in either layout or a JSON/YAML file, instead of the one beside the
            weights.
            revision, cache_dir, force_download, proxies, token, local_files_only: as
            ``huggingface_hub.hf_hub_download``.
            device / map_location: where the model goes (default: CPU; ``"auto"``: the best device there is).
            torch_dtype: cast the weights (e.g. ``torch.bfloat16`` or ``"bf16"``); modules the official code keeps in
                float32 stay float32.
        """
        del resume_download  # accepted for compatibility; huggingface_hub always resumes
        hub = {
            "revision": revision,
            "cache_dir": None if cache_dir is None else str(cache_dir),
            "force_download": force_download,
            "proxies": proxies,
            "token": token,
            "local_files_only": local_files_only,
        }
        name = str(pretrained_model_name_or_path)
        found = resolve_checkpoint(name, **hub)
        config_file = str(config) if isinstance(config, (str, os.PathLike)) else found.config_file
        raw = (
            read_config_file(config)
            if isinstance(config, (str, os.PathLike))
            else dict(config)
            if isinstance(config, Mapping)
            else found.config
        )
        sd = read_state_dict(found.weights)
        layout = cls._check_family(name, raw, sd.keys())
        config = cls._config_for(config, raw, layout, sd, found, config_file)
        cls.check_fits(config)  # a config file asking for a model larger than memory fails here, not in the allocator
        with torch.device("meta"):  # the weights checked against the model's shapes before a byte of it is allocated
            expected = cls(config).state_dict()
        what = f"the {cls.family} {cls.kind} its config describes"
        tensors, dropped = check_state_dict(expected, sd, cls.ignored_prefixes, str(found.weights), what)
        model = cls(config)
        model.load_state_dict(tensors, strict=True)
        card_file = found.side_file("card.json")
        card = read_json(card_file) if card_file is not None else None
        model.provenance = Provenance(
            name, str(found.weights), revision, "restok" if layout is None else layout.name, tuple(dropped), card
        )
        model.load_side_files(found, layout)
        dtype = parse_dtype(torch_dtype) if torch_dtype is not None else None
        model = model.to(device=resolve_device(device or map_location or "cpu"), dtype=dtype).eval()
        check_finite(model, str(found.weights))  # after the casts: a float64 1e300 is Inf in float32
        return model

    @classmethod
    def _config_for(
        cls,
        config: Any,
        raw: Mapping[str, Any] | None,
        layout: Layout | None,
        sd: Mapping[str, torch.Tensor],
        found: ResolvedCheckpoint,
        config_file: str | None,
    ) -> Any:
        """The typed config: given, or read from ``raw`` (this package's format or the layout's) or off the weights;
        a value or tensor that cannot be read is one CheckpointError naming it and its file."""
        if config is not None and not isinstance(config, (str, os.PathLike, Mapping)):
            if not isinstance(config, cls.config_class):
                raise CheckpointError(
                    f"config must be a {cls.config_class.__name__}, a dict or a config file, got "
                    f"{type(config).__name__}"
                )
            return config
        weights = str(found.weights)
        files = {"config": config_file or f"the config of {weights}", "weights": weights}
        try:
            if layout is not None and layout.from_weights is not None:
                shapes = {k: tuple(v.shape) for k, v in sd.items()}
                empty = zero_sized(shapes)
                if empty is not None:
                    raise ReleaseError(f"tensor {empty!r} has shape {list(shapes[empty])}: zero-sized", "weights")
                return layout.from_weights(raw, shapes, weights)
            return cls.read_config(raw, layout, files["config"])
        except ReleaseError as e:
            raise CheckpointError(f"{files[e.source]}: {e}") from None
        except (KeyError, IndexError, TypeError, ZeroDivisionError, OverflowError) as e:  # a layout's reader met
            # something no release has; say where, not only what Python tripped over
            raise CheckpointError(
                f"{files['config']} / {weights}: not a {cls.family} {layout.name if layout else ''} checkpoint restok "
                f"can read ({type(e).__name__}: {e})"
            ) from None

    @classmethod
    def _check_family(cls, name: str, raw: Mapping[str, Any] | None, keys: Collection[str]) -> Layout | None:
        """The layout the checkpoint is in (None: this package's format), or a CheckpointError naming the class that
        loads it when it belongs to another family."""
        found = identify_checkpoint(raw, keys) or identify_checkpoint(raw)
        if found is None:
            return next((lay for lay in cls.layouts if lay.matches(raw, ())), None)
        other, layout = found
        if other is not cls and other.kind != cls.kind:
            raise CheckpointError(
                f"{name} is a {other.kind} checkpoint, not a {cls.kind}; load it with "
                f"restok.{other.__name__}.from_pretrained"
            )
        if other is not cls:
            raise CheckpointError(
                f"{name} is a {other.family} {other.kind} checkpoint, not a {cls.family} one; load it with "
                f"{other.__name__}.from_pretrained (or restok.models.load_{other.kind})"
            )
        return layout

    @classmethod
    def read_config(cls, raw: Mapping[str, Any] | None, layout: Layout | None, where: str) -> Any:
        """The typed config from a ``config.json`` of this package's format or of one of the family's layouts."""
        if raw is None:
            raise CheckpointError(f"no config.json beside {where}; pass config= explicitly")
        if raw.get("format") == "restok":
            version = int(raw.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise CheckpointError(
                    f"{where} uses format version {version}; this restok reads <= {FORMAT_VERSION}: upgrade restok"
                )
            try:
                return config_from_dict(cls.config_class, raw["config"])
            except (TypeError, ValueError, KeyError, OverflowError) as e:
                raise CheckpointError(f"{where}: invalid {cls.kind} config ({e})") from None
        if layout is None:
            raise CheckpointError(f"the config beside {where} does not describe a {cls.kind}")
        return layout.read_config(raw)

    def load_side_files(self, found: ResolvedCheckpoint, layout: Layout | None) -> None:
        """Read the optional files beside the weights (a generator's sampling recipe)."""

    def side_files(self) -> dict[str, Any]:
        """Optional JSON files saved beside the weights."""
        return {}

    # -------------------------------------------------------------------------------- saving
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        **push_kwargs: Any,
    ) -> Path:
        """Write this model in this package's format (``config.json``, ``model.safetensors``, side files and a model
        card ``README.md``); with ``push_to_hub`` also upload it to ``repo_id`` (default: the folder's name)."""
        family = None if DEFAULT_FAMILIES.get(self.kind) == self.family else self.family
        d = save_checkpoint(
            save_directory,
            self.kind,
            self.config.to_dict(),
            self.state_dict(),
            self.side_files(),
            model_card(self),
            family=family,
        )
        if self.provenance.card is not None:
            write_json(d / "card.json", self.provenance.card)
        if push_to_hub:
            self.push_to_hub(repo_id or Path(save_directory).name, **push_kwargs)
        return d

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload restok model",
        private: bool = False,
        token: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Upload this model (this package's format, with its model card) to a Hugging Face Hub repo; returns its
        URL."""
        with temporary_folder() as d:
            self.save_pretrained(d)
            return push_folder_to_hub(
                d,
                repo_id,
                commit_message=commit_message,
                private=private,
                token=token,
                revision=revision,
                create_pr=create_pr,
            )
