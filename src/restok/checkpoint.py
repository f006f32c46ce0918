"""Reading and writing checkpoints: this package's format and the official ResTok/LlamaGen layouts.

Our format is a directory with ``config.json`` (``{"format": "restok", "format_version": 1, "kind":
..., "config": {...}}``) and ``model.safetensors``. The official layout is the nested OmegaConf
``config.json`` (tokenizer) or the flat ``ModelArgs`` one (generator) beside ``model.safetensors`` or
``pytorch_model.bin``. Nothing here unpickles arbitrary objects: ``.bin``/``.pt`` files are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from .config import HARConfig, PixelCNNConfig, ResTokConfig, config_from_dict

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "read_state_dict",
    "resolve_checkpoint",
    "tokenizer_config_from_official",
    "generator_config_from_official",
    "load_tokenizer",
    "load_generator",
    "save_model",
    "load_state_dict_checked",
    "read_config_file",
    "convert_checkpoint",
    "push_to_hub",
]

FORMAT_VERSION = 1
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Keys of the official training checkpoints that inference does not use.
TOKENIZER_TRAINING_ONLY = ("foundation_model.", "vf_proj.", "vf_proj_dec.", "mlp_proj.", "decoder.feat_mask_token")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_VIT_SIZES = {"small": (512, 6, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the model."""


# ----------------------------------------------------------------------------------------------------
# Files


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.bin``/``.pt``/``.pth`` file read with ``weights_only=True``.

    Strips ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) prefixes. A pickle that needs anything but
    tensors and plain containers is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError/RuntimeError variously
            raise CheckpointError(
                f"refusing to load {path}: it is not a plain tensor checkpoint readable with "
                f"weights_only=True ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                "Convert it to safetensors in a trusted environment."
            ) from None
        for key in ("state_dict", "model", "module"):
            if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
                sd = sd[key]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} does not hold a flat mapping of names to tensors")
    out = {}
    for k, v in sd.items():
        k = k.replace("_orig_mod.", "")
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def _hub_download(repo_id: str, filename: str, revision: str | None = None) -> str:
    """Download one file of a Hub repo (cached; respects HF_HUB_OFFLINE)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a core dependency, but be explicit
        raise CheckpointError("loading from the Hugging Face Hub needs `pip install huggingface_hub`") from None
    return hf_hub_download(repo_id, filename, revision=revision)


# The small MNIST models that configs/mnist-*.yaml train, shipped in assets/<name>/ (config, weights and card.json:
# how they were trained and what they measure).
EMBEDDED_MODELS = ("restok-tiny-mnist", "har-tiny-mnist")


def embedded_model_dir(name: str) -> Path:
    """Folder of an embedded model inside the installed package."""
    from importlib import resources

    return Path(str(resources.files("restok").joinpath("assets", name)))


def embedded_model_card(name: str) -> dict[str, Any] | None:
    """The ``card.json`` of an embedded model (training command, wall time, measured figures), if it has one."""
    if name not in EMBEDDED_MODELS:
        return None
    card = embedded_model_dir(name) / "card.json"
    return json.loads(card.read_text()) if card.is_file() else None


def resolve_checkpoint(path_or_hub_id: str, revision: str | None = None) -> tuple[dict[str, Any] | None, Path]:
    """Find ``(config dict or None, weights file)`` for an embedded model name, a directory, a weights file
    or a Hub repo id."""
    if str(path_or_hub_id) in EMBEDDED_MODELS and not Path(path_or_hub_id).exists():
        d = embedded_model_dir(str(path_or_hub_id))
        if not d.is_dir():
            raise CheckpointError(
                f"the embedded model {path_or_hub_id!r} is missing from this installation ({d}); reinstall restok, "
                "or pass a local directory, file or Hub id instead"
            )
        path_or_hub_id = str(d)
    p = Path(path_or_hub_id).expanduser()
    if p.is_file():
        # a raw training checkpoint (e.g. checkpoint-N/ema_model/pytorch_model.bin) keeps its config higher up
        for d in (p.parent, p.parent.parent, p.parent.parent.parent):
            for name in ("config.json", "config.yaml"):
                if (d / name).is_file():
                    return read_config_file(d / name), p
        return None, p
    if p.is_dir():
        cfg_path = p / "config.json"
        for name in WEIGHT_FILES:
            if (p / name).is_file():
                return (_read_json(cfg_path) if cfg_path.is_file() else None), p / name
        raise CheckpointError(f"no {' or '.join(WEIGHT_FILES)} in directory {p}")
    if not _HUB_ID.fullmatch(str(path_or_hub_id)):
        raise CheckpointError(f"checkpoint path does not exist: {path_or_hub_id}")
    return _resolve_hub(str(path_or_hub_id), revision)


def _resolve_hub(repo_id: str, revision: str | None) -> tuple[dict[str, Any], Path]:
    """Config and weights of a Hub repo, with an actionable message when offline and not cached."""
    try:
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError:  # older huggingface_hub
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError  # type: ignore
    try:
        cfg = _read_json(Path(_hub_download(repo_id, "config.json", revision)))
        last: Exception | None = None
        for name in WEIGHT_FILES:
            try:
                return cfg, Path(_hub_download(repo_id, name, revision))
            except EntryNotFoundError as e:
                last = e
        raise CheckpointError(f"Hub repo {repo_id} has none of {WEIGHT_FILES}") from last
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{repo_id!r} is not a local path and is not in the Hugging Face cache, and the Hub cannot be "
            "reached (offline?). Download it once with network access "
            f"(`huggingface-cli download {repo_id}`) or pass a local directory or file."
        ) from None
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - repository not found, auth, HTTP errors
        raise CheckpointError(f"could not load {repo_id!r} from the Hugging Face Hub: {type(e).__name__}: {e}") from None


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON or YAML (needs PyYAML) config file as a dict; official ``${a.b}`` interpolations are resolved."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise CheckpointError(f"reading {path} needs PyYAML (`pip install pyyaml`), or pass a JSON config") from None
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise CheckpointError(f"cannot read config {path}: {e}") from None
    else:
        data = _read_json(path)
    return _resolve_interpolations(data, data)


_INTERP = re.compile(r"^\$\{([\w.]+)\}$")


def _resolve_interpolations(node: Any, root: Mapping[str, Any]) -> Any:
    """Replace whole-string OmegaConf references ``${a.b.c}`` by the value they point to."""
    if isinstance(node, Mapping):
        return {k: _resolve_interpolations(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_interpolations(v, root) for v in node]
    if isinstance(node, str) and (m := _INTERP.match(node)):
        cur: Any = root
        for part in m.group(1).split("."):
            if not isinstance(cur, Mapping) or part not in cur:
                return node
            cur = cur[part]
        return _resolve_interpolations(cur, root)
    return node


def _read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON file, naming it on failure."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read config {path}: {e}") from None


# ----------------------------------------------------------------------------------------------------
# Configs


def checkpoint_kind(cfg: Mapping[str, Any] | None, keys: Any = None) -> str | None:
    """``"tokenizer"``, ``"generator"`` or None (unknown), from a config dict of either layout or the weight names.

    The official nested configs of inference and generator training hold both a ``vq_model`` and a
    ``generator`` block, so for them only the weight names decide.
    """
    if keys is not None:
        keys = set(keys)
        if "tok_embeddings.weight" in keys:
            return "generator"
        if any(k.startswith("encoder.") for k in keys):
            return "tokenizer"
    if not cfg:
        return None
    if cfg.get("format") == "restok":
        return cfg.get("kind")
    model = cfg.get("model")
    if isinstance(model, Mapping) and "vq_model" in model:
        return None if "generator" in model else "tokenizer"
    if "n_layer" in cfg and "vocab_size" in cfg:
        return "generator"
    return None


def tokenizer_config_from_official(cfg: Mapping[str, Any]) -> ResTokConfig:
    """Map the official nested tokenizer config (``model.vq_model``, ``dataset.preprocessing``) to ours.

    Raises for official options whose code paths are broken or that no released model uses.
    """
    vq = dict(cfg["model"]["vq_model"])
    crop = int(cfg.get("dataset", {}).get("preprocessing", {}).get("crop_size", 256))
    unsupported = {
        "learnable_latent_tokens": (False, "broken in the official code (undefined _expand_token)"),
        "multi_quant": (True, "only per-level output heads are implemented"),
        "vae_encoder": (True, "only the CNN pixel encoder is implemented"),
        "is_legacy": (True, "only the legacy (TiTok) heads of the released weights are implemented"),
    }
    for key, (want, why) in unsupported.items():
        if key in vq and bool(vq[key]) != want:
            raise CheckpointError(f"official config sets {key}={vq[key]}: not supported ({why})")
    if float(vq.get("reduction_ratio", 0.5)) != 0.5:
        raise CheckpointError(f"official config sets reduction_ratio={vq['reduction_ratio']}: only 0.5 is supported")
    enc = _VIT_SIZES[vq.get("vit_enc_model_size", "large")]
    dec = _VIT_SIZES[vq.get("vit_dec_model_size", "large")]
    pixel = PixelCNNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in vq.get("pixel_cnn", {}).items()})
    stages = int(vq.get("hierarchy_stages", 4)) if vq.get("merge_tokens", False) else 1
    out = ResTokConfig(
        image_size=crop,
        num_tokens=int(vq["num_latent_tokens"]),
        min_tokens=int(vq.get("num_min_tokens", 4)),
        codebook_size=int(vq["codebook_size"]),
        token_size=int(vq["token_size"]),
        width=enc[0],
        depth=enc[1],
        num_heads=enc[2],
        decoder_width=dec[0],
        decoder_depth=dec[1],
        decoder_num_heads=dec[2],
        hierarchy_stages=max(stages, 1),
        residual_image_tokens=bool(vq.get("residual_image_tokens", True)),
        residual_latent_tokens=bool(vq.get("residual_latent_tokens", True)),
        latent_hierarchy=bool(vq.get("latent_hierarchy", True)),
        learnable_dec_image_tokens=bool(vq.get("learnable_dec_image_tokens", True)),
        rope_theta=float(vq.get("rope_base_len", 10000)),
        use_l2_norm=bool(vq.get("use_l2_norm", False)),
        commitment_cost=float(vq.get("commitment_cost", 0.25)),
        entropy_loss_ratio=float(vq.get("entropy_loss_ratio", 0.0)),
        nested_dropout=bool(vq.get("drop_latent_tokens", True)) and float(vq.get("drop_prob", 0.2)) > 0,
        drop_prob=float(vq.get("drop_prob", 0.2)) or 0.2,
        pixel_cnn=pixel,
    )
    patch = int(vq.get("vit_enc_patch_size", 16))
    if crop // patch != out.grid_size:
        raise CheckpointError(
            f"official config: crop_size {crop} / vit_enc_patch_size {patch} = {crop // patch}, but the pixel CNN "
            f"downsamples {out.pixel_cnn.downsample}x to a {out.grid_size} grid"
        )
    return out


_GPT_SIZES = {  # LlamaGen model_type -> (n_layer, n_head, dim)
    "GPT-B": (12, 12, 768), "GPT-L": (24, 16, 1024), "GPT-XL": (36, 20, 1280), "GPT-XXL": (48, 24, 1536),
    "GPT-XXXL": (48, 40, 2560), "GPT-1B": (22, 32, 2048), "GPT-3B": (24, 32, 3200), "GPT-7B": (32, 32, 4096),
}


def _model_args_from_training_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Flat ``ModelArgs`` from the official nested generator config (``model.generator`` block)."""
    g = cfg["model"]["generator"]
    if g.get("model_type") not in _GPT_SIZES:
        raise CheckpointError(f"unknown official generator model_type {g.get('model_type')!r}; known: {sorted(_GPT_SIZES)}")
    n_layer, n_head, dim = _GPT_SIZES[g["model_type"]]
    dropout = 0.0 if float(g.get("drop_path_rate", 0.0)) > 0 else float(g.get("dropout_p", 0.1))
    args = {"dim": dim, "n_layer": n_layer, "n_head": n_head, "vocab_size": g["vocab_size"], "block_size": g["block_size"],
            "num_classes": g.get("num_classes", 1000), "cls_token_num": g.get("cls_token_num", 1),
            "model_type": g.get("gpt_type", "c2i"), "resid_dropout_p": dropout, "ffn_dropout_p": dropout,
            "drop_path_rate": g.get("drop_path_rate", 0.0), "token_dropout_p": g.get("token_dropout_p", 0.1)}
    if g.get("har", False):
        args["ar_token_num"] = g.get("ar_token_num", 4)
        args["spe_token_num"] = g.get("spe_token_num", 127)
    return args


def generator_config_from_official(cfg: Mapping[str, Any]) -> HARConfig:
    """Map the official flat ``ModelArgs`` config (or the nested training config) of a HAR/vanilla generator to ours."""
    if isinstance(cfg.get("model"), Mapping) and "generator" in cfg["model"]:
        cfg = _model_args_from_training_config(cfg)
    if cfg.get("model_type", "c2i") != "c2i":
        raise CheckpointError(f"only class-conditional (c2i) generators are supported, got {cfg.get('model_type')!r}")
    if int(cfg.get("cls_token_num", 1)) != 1:
        raise CheckpointError("only cls_token_num = 1 is supported")
    L = int(cfg["block_size"])
    has_har = "ar_token_num" in cfg
    return HARConfig(
        dim=int(cfg["dim"]),
        n_layer=int(cfg["n_layer"]),
        n_head=int(cfg["n_head"]),
        n_kv_head=cfg.get("n_kv_head"),
        multiple_of=int(cfg.get("multiple_of", 256)),
        ffn_dim_multiplier=cfg.get("ffn_dim_multiplier"),
        rope_base=float(cfg.get("rope_base", 10000)),
        norm_eps=float(cfg.get("norm_eps", 1e-5)),
        initializer_range=float(cfg.get("initializer_range", 0.02)),
        num_tokens=L,
        vocab_size=int(cfg["vocab_size"]),
        num_classes=int(cfg.get("num_classes", 1000)),
        ar_tokens=int(cfg["ar_token_num"]) if has_har else L,
        num_special_tokens=int(cfg.get("spe_token_num", L - 1)) if has_har else 0,
        class_dropout_prob=float(cfg.get("class_dropout_prob", 0.1)),
        token_dropout_p=float(cfg.get("token_dropout_p", 0.1)),
        attn_dropout_p=float(cfg.get("attn_dropout_p", 0.0)),
        resid_dropout_p=float(cfg.get("resid_dropout_p", 0.1)),
        ffn_dropout_p=float(cfg.get("ffn_dropout_p", 0.1)),
        drop_path_rate=float(cfg.get("drop_path_rate", 0.0)),
    )


# ----------------------------------------------------------------------------------------------------
# Loading


def load_state_dict_checked(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], ignore_prefixes: tuple[str, ...] = (), source: str = ""
) -> list[str]:
    """Load strictly except for ``ignore_prefixes``; raise naming missing, unexpected and mis-shaped keys.

    Returns the names of the ignored (dropped) keys.
    """
    own = model.state_dict()
    dropped = [k for k in state_dict if k.startswith(ignore_prefixes) and k not in own]
    sd = {k: v for k, v in state_dict.items() if k not in dropped}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in set(sd) & set(own) if sd[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        lines = [f"checkpoint {source} does not match {type(model).__name__}({getattr(model, 'config', '')!r})"]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
                lines.append(f"  {title}: {shown}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    return dropped


def _load(path_or_hub_id: str, kind: str, revision: str | None, config: Any) -> tuple[Any, dict[str, torch.Tensor], str]:
    """Resolve a checkpoint and return (config dataclass, state dict, description).

    ``config`` may be a config dataclass, a dict in either layout, or a path to a JSON/YAML config.
    """
    raw_cfg, weights = resolve_checkpoint(str(path_or_hub_id), revision)
    if isinstance(config, (str, os.PathLike)):
        raw_cfg, config = read_config_file(config), None
    elif isinstance(config, Mapping):
        raw_cfg, config = dict(config), None
    found = checkpoint_kind(raw_cfg)
    sd = read_state_dict(weights)
    found = checkpoint_kind(raw_cfg, sd.keys()) or found
    other = {"tokenizer": "generator", "generator": "tokenizer"}[kind]
    if found == other:
        cls = "HARGenerator" if other == "generator" else "ResTok"
        raise CheckpointError(f"{path_or_hub_id} is a {other} checkpoint, not a {kind}; load it with restok.{cls}.from_pretrained")
    if config is None:
        if raw_cfg is None:
            raise CheckpointError(f"no config.json beside {weights}; pass config= explicitly")
        if raw_cfg.get("format") == "restok":
            version = int(raw_cfg.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise CheckpointError(f"{path_or_hub_id} uses format version {version}; this restok reads <= {FORMAT_VERSION}: upgrade restok")
            config = config_from_dict(ResTokConfig if kind == "tokenizer" else HARConfig, raw_cfg["config"])
        elif kind == "tokenizer" and isinstance(raw_cfg.get("model"), Mapping) and "vq_model" in raw_cfg["model"]:
            config = tokenizer_config_from_official(raw_cfg)
        elif kind == "generator" and ("n_layer" in raw_cfg or "generator" in raw_cfg.get("model", {})):
            config = generator_config_from_official(raw_cfg)
        else:
            raise CheckpointError(f"the config beside {weights} does not describe a {kind}")
    return config, sd, str(weights)


def load_tokenizer(path_or_hub_id: str, revision: str | None = None, config: ResTokConfig | None = None, device: str | torch.device = "cpu") -> Any:
    """A :class:`~restok.ResTok` in eval mode from our format or the official layout (training-only keys dropped)."""
    from .tokenizer import ResTok

    cfg, sd, src = _load(path_or_hub_id, "tokenizer", revision, config)
    model = ResTok(cfg)
    model.dropped_keys = load_state_dict_checked(model, sd, TOKENIZER_TRAINING_ONLY, src)
    model.source = {"source": str(path_or_hub_id), "weights": src}
    return model.to(device).eval()


def load_generator(path_or_hub_id: str, revision: str | None = None, config: HARConfig | None = None, device: str | torch.device = "cpu") -> Any:
    """A :class:`~restok.HARGenerator` in eval mode from our format or the official layout."""
    from .generator import HARGenerator

    cfg, sd, src = _load(path_or_hub_id, "generator", revision, config)
    model = HARGenerator(cfg)
    model.dropped_keys = load_state_dict_checked(model, sd, (), src)
    model.source = {"source": str(path_or_hub_id), "weights": src}
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------
# Saving


def _atomic_write(path: Path, write: Any) -> None:
    """Write via a temporary file in the same directory, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions an ordinary file would get under the umask,
    # so saved models stay readable by others (e.g. shipped inside an installed package).
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # after writing: some writers replace the file
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(model: nn.Module, directory: str | os.PathLike) -> None:
    """Write ``config.json`` and ``model.safetensors`` of a ResTok or HARGenerator atomically."""
    from safetensors.torch import save_file

    from .tokenizer import ResTok

    kind = "tokenizer" if isinstance(model, ResTok) else "generator"
    d = Path(directory)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _atomic_write(d / "model.safetensors", lambda p: save_file(sd, p, metadata={"format": "restok", "kind": kind}))
    meta = {"format": "restok", "format_version": FORMAT_VERSION, "kind": kind, "config": model.config.to_dict()}
    _atomic_write(d / "config.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))


def convert_checkpoint(src: str, dst: str | os.PathLike, kind: str = "auto", config: Any = None) -> tuple[str, list[str]]:
    """Convert an official (or our) checkpoint into this package's format at ``dst``.

    Returns ``(kind, dropped_keys)``: the training-only tensors that inference does not use.
    """
    if kind == "auto":
        raw_cfg, weights = resolve_checkpoint(str(src))
        if isinstance(config, (str, os.PathLike)):
            raw_cfg = read_config_file(config)
        elif isinstance(config, Mapping):
            raw_cfg = dict(config)
        kind = checkpoint_kind(raw_cfg, read_state_dict(weights).keys()) or ""
        if kind not in ("tokenizer", "generator"):
            raise CheckpointError(f"cannot tell whether {src} is a tokenizer or a generator; pass kind explicitly")
    loader = load_tokenizer if kind == "tokenizer" else load_generator
    model = loader(src, config=config)
    save_model(model, dst)
    return kind, list(model.dropped_keys)


def push_to_hub(model: nn.Module, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload restok model") -> str:
    """Save ``model`` in this package's format and upload it to a Hugging Face Hub repo; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        save_model(model, d)
        api.upload_folder(repo_id=repo_id, folder_path=d, commit_message=commit_message)
    return str(url)
