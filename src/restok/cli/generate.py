"""``restok generate`` (class-conditional samples, a grid and a manifest of every setting) and ``restok vary``
(coarse-kept variations of one image), with any registered generator and the tokenizer it was trained on."""

from __future__ import annotations

import argparse

from ..pipelines.samples import SampleRequest, VariationRequest, write_samples, write_variations
from .base import Command, request
from .options import (
    batch_option,
    compile_option,
    device_option,
    group,
    model_options,
    number,
    output_option,
    precision_options,
    progress_option,
    sampling_changes,
    sampling_options,
    seed_option,
)

__all__ = ["COMMANDS"]


def _pair_and_recipe(p: argparse.ArgumentParser) -> None:
    """The models, the sampling recipe, the seed and where they run."""
    model_options(p, tokenizer="required", generator="required")
    sampling_options(p)
    seed_option(p)
    device_option(p)
    precision_options(p)
    batch_option(p, 16)


# ------------------------------------------------------------------------------------------- generate
def _generate_arguments(p: argparse.ArgumentParser) -> None:
    g = group(p, "what to generate")
    g.add_argument(
        "--classes",
        nargs="+",
        required=True,
        help='class ids or names, e.g. 207 360 or "golden retriever" otter (ImageNet names for 1,000-class models)',
    )
    g.add_argument("--per-class", type=number(int, ge=1, le=10**6), default=1, help="images per class (default: 1)")
    g.add_argument(
        "--num-tokens",
        type=number(int, ge=1, le=8192),
        default=None,
        help="stop after the call that completes this many tokens (fewer calls)",
    )
    g.add_argument(
        "--progressive", action="store_true", help="also write what each HAR step decodes to, coarse to fine"
    )
    _pair_and_recipe(p)
    compile_option(p)
    output_option(p, "output directory")
    progress_option(p)


def run_generate(args: argparse.Namespace) -> int:
    """Sample class-conditional images; write PNGs, a grid and a JSON manifest of every setting."""
    m = write_samples(request(SampleRequest, args, changes=sampling_changes(args)))
    print(
        f"wrote {len(m['images'])} image(s), grid.png and manifest.json to {args.out} ({m['seconds']:.1f}s, "
        f"{m['settings']['num_model_calls']} calls per batch)"
    )
    return 0


# ------------------------------------------------------------------------------------------- vary
def _vary_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file")
    g = group(p, "what to generate")
    g.add_argument(
        "--keep", type=number(int, ge=1, le=8192), required=True, help="tokens kept (a level boundary: 1, 2, 4, 8, ...)"
    )
    g.add_argument("--classes", required=True, help="class id or name of the variations")
    g.add_argument("--num", type=number(int, ge=1, le=10**4), default=8, help="variations (default: 8)")
    _pair_and_recipe(p)
    output_option(p, "output directory")


def run_vary(args: argparse.Namespace) -> int:
    """Coarse-kept variations of one image: its first ``--keep`` tokens kept, the finer levels sampled."""
    rec = write_variations(request(VariationRequest, args, changes=sampling_changes(args)))
    print(
        f"wrote {args.num} variations keeping {args.keep} of {rec['tokenizer']['config']['num_tokens']} "
        f"tokens, and the strip (original{', coarse' if rec['coarse'] else ''}, variations) to {args.out}"
    )
    return 0


COMMANDS = (
    Command(
        "generate", "class-conditional generation (HAR, 9 calls for 128 tokens)", _generate_arguments, run_generate
    ),
    Command(
        "vary",
        "coarse-kept variations: keep an image's first k tokens, sample the finer levels",
        _vary_arguments,
        run_vary,
    ),
)
