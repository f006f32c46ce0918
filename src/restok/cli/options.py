"""Option sets that several commands share, each declared once: the models, the device (one rule, one list of
choices), precisions, batch size, seed, output, progress, the prefix lengths (one grammar), and the sampling options
(generated from :class:`~restok.SamplingConfig`'s fields, not copied by hand). Each set is an argument group, so
``--help`` reads in sections."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .. import models  # noqa: F401 - every family registers itself, for the help texts
from ..core.fields import Range, field_range
from ..core.registry import family_titles
from ..eval.budgets import TARGET_RANGES
from ..runtime.precision import DTYPES
from ..runtime.processes import DEVICES
from ..runtime.seeds import MAX_SEED
from ..sampling import SAMPLING_FIELDS, SAMPLING_PRESETS, SamplingConfig
from .base import CLIError

__all__ = [
    "number",
    "ranged",
    "target_type",
    "sampling_type",
    "COUNT",
    "SEED",
    "Parser",
    "group",
    "model_options",
    "device_option",
    "precision_options",
    "batch_option",
    "seed_option",
    "output_option",
    "progress_option",
    "compile_option",
    "tokens_option",
    "parse_tokens",
    "sampling_options",
    "sampling_changes",
    "sampling_from_args",
]

_GROUPS = "_restok_groups"


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line naming the option (``error: argument --seed: must be ...``) and the
    usage left to ``--help``; exit status 2 as argparse's."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print the one-line error and exit with status 2."""
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def number(
    kind: type,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    unit: str = "",
) -> Callable[[str], Any]:
    """An argparse ``type`` for an int or float option in a range (finite always): a value outside it, NaN, inf or
    a non-number is refused by argparse with a one-line message naming the option. The range travels with the type
    (``.range``), so tests and ``--help`` read it."""
    rng = Range(ge, gt, le, lt)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {what} {rng.describe()}{unit}, got {text!r}") from None
        if value not in rng:
            raise argparse.ArgumentTypeError(f"must be {rng.describe()}{unit}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    parse.range = rng  # type: ignore[attr-defined]
    parse.kind = kind  # type: ignore[attr-defined]
    return parse


# The counts and sizes the commands take; the upper bounds are typo guards far above any real run.
COUNT = number(int, ge=1, le=10**9)
SEED = number(int, ge=0, le=MAX_SEED)


def ranged(kind: type, rng: Range) -> Callable[[str], Any]:
    """:func:`number` for a range declared elsewhere (a config field's, a metric's)."""
    return number(kind, ge=rng.ge, gt=rng.gt, le=rng.le, lt=rng.lt)


def target_type(metric: str) -> Callable[[str], Any]:
    """The argparse type of a quality target (``--target-psnr``, ``--target-ssim``): the range the API checks."""
    return ranged(float, TARGET_RANGES[metric])


def sampling_type(name: str) -> Any:
    """The argparse type of one sampling setting (its field's range)."""
    return _number_type(SAMPLING_FIELDS[name])


def group(p: argparse.ArgumentParser, title: str) -> Any:
    """The argument group ``title`` of a parser (made once, shared by every option set that names it)."""
    groups = p.__dict__.setdefault(_GROUPS, {})
    if title not in groups:
        groups[title] = p.add_argument_group(title)
    return groups[title]


def model_options(p: argparse.ArgumentParser, tokenizer: str | None = "required", generator: str | None = None) -> None:
    """``--tokenizer`` / ``--generator``: ``"required"``, ``"optional"`` (default None: the command's own choice), a
    default model's name, or None for no such option."""
    g = group(p, "models")
    for flag, value, what in (("--tokenizer", tokenizer, "tokenizer"), ("--generator", generator, "generator")):
        if value is None:
            continue
        helptext = f"{what}: an embedded name, a folder, a weights file or a Hub id ({family_titles(what)})"
        if value == "required":
            g.add_argument(flag, required=True, help=helptext)
        elif value == "optional":
            g.add_argument(flag, default=None, help=helptext)
        else:
            g.add_argument(flag, default=value, help=f"{helptext} (default: {value})")


def device_option(p: argparse.ArgumentParser) -> None:
    """``--device``: where to run (auto: cuda, then mps, then cpu); ``--startup-timeout``: how long the processes of a
    launcher may take to find each other."""
    g = group(p, "device and precision")
    g.add_argument(
        "--device",
        default="auto",
        choices=list(DEVICES),
        help="where to run (default: auto = cuda, then mps, then cpu)",
    )
    g.add_argument(
        "--startup-timeout",
        type=number(float, gt=0, le=86400),
        default=None,
        metavar="SECONDS",
        help="under torchrun/accelerate launch: seconds every process has to start and join, else the missing ranks "
        "are named (default: $RESTOK_STARTUP_TIMEOUT or 300)",
    )


def precision_options(p: argparse.ArgumentParser, autocast_help: str = "autocast precision (default: fp32)") -> None:
    """``--dtype`` (autocast) and ``--pixel-dtype`` (the CNN pixel decoder)."""
    g = group(p, "device and precision")
    g.add_argument("--dtype", default="fp32", choices=list(DTYPES), help=autocast_help)
    g.add_argument(
        "--pixel-dtype",
        default="fp32",
        choices=list(DTYPES),
        help="precision of the CNN pixel decoder (default: fp32, as the official code; bf16 is faster, pixels "
        "within bf16 rounding)",
    )


def batch_option(p: argparse.ArgumentParser, default: int, what: str = "images per batch") -> None:
    """``--batch-size``."""
    group(p, "device and precision").add_argument(
        "--batch-size", type=number(int, ge=1, le=2**20), default=default, help=f"{what} (default: {default})"
    )


def seed_option(p: argparse.ArgumentParser) -> None:
    """``--seed``: the seed of every random draw of the command."""
    group(p, "sampling").add_argument(
        "--seed", type=SEED, default=0, help="seed (default: 0); the same seed and settings give the same output"
    )


def output_option(p: argparse.ArgumentParser, helptext: str, default: str | None = None) -> None:
    """``--out``: where the command writes (required unless it has a default)."""
    g = group(p, "output")
    if default is None:
        g.add_argument("--out", required=True, help=helptext)
    else:
        g.add_argument("--out", default=default, help=f"{helptext} (default: {default})")


def progress_option(p: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars."""
    group(p, "output").add_argument("--no-progress", action="store_true", help="no progress bars")


def compile_option(p: argparse.ArgumentParser) -> None:
    """``--compile``: the compiled sampling steps and decode (restok.sampling.compiled)."""
    group(p, "device and precision").add_argument(
        "--compile",
        action="store_true",
        help="run each HAR step shape and the decode as one torch.compile graph (CUDA graphs on CUDA); the first "
        "batch of each size compiles, later ones are faster; same tokens as without",
    )


def tokens_option(p: argparse.ArgumentParser, helptext: str) -> None:
    """``--tokens``: a prefix length, a comma list of them, or ``all`` (one grammar, :func:`parse_tokens`)."""
    group(p, "models").add_argument("--tokens", default=None, metavar="K|K1,K2,...|all", help=helptext)


def parse_tokens(value: str | None) -> int | str | tuple[int, ...] | None:
    """``--tokens`` (one grammar for every command): None (not given), a number, a comma list, or ``all``. Which
    lengths a tokenizer allows is :func:`restok.core.hierarchy.select_prefixes`'s to check."""
    if value is None or value == "all":
        return value
    try:
        ks = tuple(sorted({int(v) for v in str(value).split(",")}))
    except ValueError:
        raise CLIError(f"--tokens must be a number, a comma list of numbers or 'all', got {value!r}") from None
    return ks[0] if len(ks) == 1 else ks


def _number_type(f: Any) -> Any:
    """The argparse type of a recipe field: a ranged int or float (the field's own range), or str."""
    kind = (
        int
        if isinstance(f.default, int) and not isinstance(f.default, bool)
        else float
        if isinstance(f.default, float)
        else str
    )
    if kind is str:
        return str
    return ranged(kind, field_range(f) or Range())


def sampling_options(p: argparse.ArgumentParser, many: bool = False) -> None:
    """The sampling options: ``--sampling`` (a preset name or a JSON file), then one option per recipe field (from
    SamplingConfig's fields and their descriptions); ``many``: each takes several values (a search grid)."""
    g = group(p, "sampling")
    if not many:
        g.add_argument(
            "--sampling",
            default=None,
            metavar="PRESET|FILE.json",
            help=f"sampling recipe: {' or '.join(SAMPLING_PRESETS)} (preset), or a JSON file (e.g. a guidance "
            "search's best.json); default: the generator's own (generation_config.json; the released "
            "recipe for the official weights)",
        )
    for name, f in SAMPLING_FIELDS.items():
        kwargs: dict[str, Any] = {"default": None, "type": _number_type(f), "help": f.metadata["help"]}
        if "choices" in f.metadata:
            kwargs["choices"] = list(f.metadata["choices"])
        if many:
            kwargs["nargs"] = "+"
            kwargs["help"] += " (several values: the grid's axis)"
        g.add_argument("--" + name.replace("_", "-"), **kwargs)


def sampling_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the sampling options change (None where not given), by recipe field."""
    return {name: getattr(args, name) for name in SAMPLING_FIELDS}


def sampling_from_args(args: argparse.Namespace, default: SamplingConfig) -> SamplingConfig:
    """The recipe the options name: ``--sampling`` (or ``default``), with each given setting changed."""
    try:
        return SamplingConfig.resolve(args.sampling, default, **sampling_changes(args))
    except ValueError as e:
        raise CLIError(f"sampling: {e}") from None
