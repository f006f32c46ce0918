"""The ``restok`` command line: reconstruct, tokenize, detokenize, generate, convert, info (and, from
:mod:`restok.cli_train`, train, extract-codes, check-codes).

Every model-running command takes ``--device auto|cpu|cuda|mps`` and ``--dtype fp32|bf16|fp16``; errors are one
line (``--debug`` shows the traceback); a bad image file is named and skipped. Exit status: 0 done, 1 done but some
input files failed, 2 error.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import __version__
from . import hierarchy as Hy
from .classes import resolve_classes
from .codes import fill_past_lengths
from .cli_common import (
    CLIError, add_compile_option, add_model_options, add_sampling_options, batches, progress, resolve_device, sampling_from_args,
)
from .cli_eval import add_eval_commands
from .cli_plot import add_plot_commands
from .cli_train import add_train_commands
from .config import GENERATOR_PRESETS, TOKENIZER_PRESETS
from .generator import HARGenerator
from .images import ImageLoadError, load_image, make_grid, sample_grid, save_image
from .io import save_npz, write_json
from .precision import DTYPES, autocast_to
from .sampling import RELEASED_RECIPE
from .tokenizer import ResTok

# Exit status: 0 done, 1 done but some input files could not be read (each named), 2 error (nothing done), 128 + N
# interrupted by signal N.
EXIT_INPUTS_FAILED = 1
EXIT_ERROR = 2

# ----------------------------------------------------------------------------------------------------
# helpers


def _load_tokenizer(src: str, device: torch.device) -> ResTok:
    """Load a tokenizer from a path or Hub id (a preset name gives an untrained model)."""
    if src in TOKENIZER_PRESETS:
        raise CLIError(f"{src!r} is an untrained preset; pass a checkpoint directory, file or Hub id")
    return ResTok.from_pretrained(src, device=device)


def _load_generator(src: str, device: torch.device) -> HARGenerator:
    """Load a generator from a path or Hub id."""
    if src in GENERATOR_PRESETS:
        raise CLIError(f"{src!r} is an untrained preset; pass a checkpoint directory, file or Hub id")
    return HARGenerator.from_pretrained(src, device=device)


def _parse_tokens(value: str, tok: ResTok) -> list[int]:
    """``--tokens`` as a list of prefix lengths: a number or ``all``."""
    if value == "all":
        return list(tok.prefix_lengths)
    try:
        k = int(value)
    except ValueError:
        raise CLIError(f"--tokens must be a number or 'all', got {value!r}") from None
    if k not in tok.prefix_lengths:
        raise CLIError(f"--tokens {k} is not allowed; choose one of {list(tok.prefix_lengths)} or 'all'")
    return [k]


def _load_pair(args: argparse.Namespace, device: torch.device) -> tuple[HARGenerator, ResTok]:
    """``--generator`` and ``--tokenizer``, refusing a pair whose vocabularies or token counts differ."""
    from .pipeline import check_compatible

    gen, tok = _load_generator(args.generator, device), _load_tokenizer(args.tokenizer, device)
    check_compatible(tok, gen)
    return gen, tok


def unique_stems(paths: Sequence[str]) -> list[str]:
    """Output names for input files: their stems, with the parent folder (then a counter) added where two collide, so
    that ``a/x.png`` and ``b/x.png`` never overwrite each other."""
    plain = [Path(p).stem for p in paths]
    stems = [f"{Path(p).parent.name or 'root'}_{s}" if plain.count(s) > 1 else s for p, s in zip(paths, plain)]
    seen: dict[str, int] = {}
    out = []
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s}_{seen[s]}")
    return out


def _load_images(paths: Sequence[str], size: int) -> tuple[list[tuple[str, torch.Tensor]], list[str]]:
    """Read every image, naming and skipping the ones that fail."""
    ok, failed = [], []
    for p in progress(paths, "reading images"):
        try:
            ok.append((p, load_image(p, size)))
        except ImageLoadError as e:
            print(f"warning: skipped {e}", file=sys.stderr)
            failed.append(p)
    return ok, failed


# ----------------------------------------------------------------------------------------------------
# commands


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """Reconstruct images from k tokens; write each reconstruction and a side-by-side comparison."""
    device = resolve_device(args.device)
    tok = _load_tokenizer(args.tokenizer, device)
    ks = _parse_tokens(args.tokens, tok) if args.tokens else [tok.num_tokens]
    out = Path(args.out)
    images, failed = _load_images(args.images, tok.config.image_size)
    names = dict(zip([p for p, _ in images], unique_stems([p for p, _ in images])))
    for batch in progress(list(batches(images, args.batch_size)), "reconstructing"):
        x = torch.stack([t for _, t in batch]).to(device)
        with autocast_to(device, DTYPES[args.dtype]):
            ids = tok.encode(x)
            recons = {k: tok.decode(ids[:, :k], DTYPES[args.pixel_dtype]) for k in ks}
        for i, (path, orig) in enumerate(batch):
            stem = names[path]
            for k in ks:
                save_image(recons[k][i], out / f"{stem}_k{k}.png")
            strip = [orig] + [recons[k][i].cpu() for k in ks]
            save_image(make_grid(strip, nrow=len(strip)), out / (f"{stem}_strip.png" if len(ks) > 1 else f"{stem}_compare.png"))
    print(f"wrote {len(images)} reconstruction(s) with {ks} tokens to {out}" + (f"; {len(failed)} input(s) failed" if failed else ""))
    return EXIT_INPUTS_FAILED if failed else 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    """Encode images to token ids and save them with the file names in an .npz."""
    device = resolve_device(args.device)
    tok = _load_tokenizer(args.tokenizer, device)
    images, failed = _load_images(args.images, tok.config.image_size)
    if not images:
        raise CLIError("no readable images")
    targets = {"psnr": args.target_psnr, "ssim": args.target_ssim}
    target = {k: v for k, v in targets.items() if v is not None}
    if len(target) > 1:
        raise CLIError("give one of --target-psnr and --target-ssim")
    if args.max_tokens is not None and not target:
        raise CLIError("--max-tokens caps an adaptive budget: give --target-psnr or --target-ssim too")
    ids, lengths, quality = [], [], []
    for batch in progress(list(batches(images, args.batch_size)), "tokenizing"):
        x = torch.stack([t for _, t in batch]).to(device)
        with autocast_to(device, DTYPES[args.dtype]):
            if target:
                res = tok.encode_adaptive(x, **target, max_tokens=args.max_tokens)
                ids.append(res.ids)
                lengths.append(res.lengths)
                quality.append(res.quality)
            else:
                ids.append(tok.encode(x).cpu())
                lengths.append(torch.full((len(batch),), tok.num_tokens))
    all_ids, all_len = torch.cat(ids).numpy().astype(np.int32), torch.cat(lengths).numpy().astype(np.int32)
    fill_past_lengths(all_ids, all_len, -1)  # a ragged file: -1 past each image's length
    out = Path(args.out)
    arrays = dict(ids=all_ids, lengths=all_len, files=np.array([p for p, _ in images]), tokenizer=np.array(args.tokenizer),
                  image_size=np.array(tok.config.image_size))
    if target:
        (metric, value), = target.items()
        arrays.update(target=np.array(f"{metric}>={value}"), quality=torch.cat(quality).numpy())
    save_npz(out, **arrays)
    per = f"{tok.num_tokens} tokens each" if not target else f"{all_len.mean():.1f} tokens per image on average ({metric} >= {value})"
    print(f"wrote ids of {len(images)} image(s), {per}, to {out}" + (f"; {len(failed)} input(s) failed" if failed else ""))
    return EXIT_INPUTS_FAILED if failed else 0


def cmd_detokenize(args: argparse.Namespace) -> int:
    """Decode the ids of an .npz written by ``tokenize`` back to PNG images."""
    device = resolve_device(args.device)
    try:
        data = np.load(args.codes, allow_pickle=False)
        raw, files = data["ids"], [str(f) for f in data["files"]]
        tok_src = args.tokenizer or str(data["tokenizer"])
    except Exception as e:  # noqa: BLE001 - OSError, BadZipFile, EOFError, KeyError, ValueError: all mean "not one"
        raise CLIError(f"{args.codes}: not a readable restok codes file ({type(e).__name__}: {e})") from None
    if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.integer):
        raise CLIError(f"{args.codes}: 'ids' must be integers of shape (N, L), got {raw.dtype} {list(raw.shape)}")
    if len(files) != raw.shape[0]:
        raise CLIError(f"{args.codes}: {raw.shape[0]} rows of ids but {len(files)} file names")
    lengths = data["lengths"].astype(np.int64) if "lengths" in data.files else np.full(raw.shape[0], raw.shape[1])
    if lengths.shape != (raw.shape[0],):
        raise CLIError(f"{args.codes}: 'lengths' must hold one length per row, got shape {list(lengths.shape)}")
    ids_all = torch.from_numpy(raw.astype(np.int64))
    tok = _load_tokenizer(tok_src, device)
    bad = sorted(set(lengths.tolist()) - set(tok.prefix_lengths))
    if bad:
        raise CLIError(f"{args.codes}: lengths {bad[:5]} are not prefix lengths of the tokenizer {list(tok.prefix_lengths)}")
    if args.tokens == "all":
        wanted = {i: [k for k in tok.prefix_lengths if k <= lengths[i]] for i in range(len(files))}
    elif args.tokens:
        k = _parse_tokens(args.tokens, tok)[0]
        short = [files[i] for i in range(len(files)) if lengths[i] < k]
        if short:
            raise CLIError(f"{len(short)} image(s) keep fewer than {k} tokens (e.g. {short[0]}); decode them with a shorter --tokens")
        wanted = {i: [k] for i in range(len(files))}
    else:
        wanted = {i: [int(lengths[i])] for i in range(len(files))}  # each image from its own length
    several = args.tokens == "all"
    out = Path(args.out)
    stems = unique_stems(files)
    jobs = sorted({(k, i) for i, ks in wanted.items() for k in ks})
    written = 0
    for k in sorted({k for k, _ in jobs}):
        rows = [i for kk, i in jobs if kk == k]
        for idx in progress(list(batches(rows, args.batch_size)), f"decoding {k} tokens"):
            with autocast_to(device, DTYPES[args.dtype]):
                imgs = tok.decode(ids_all[list(idx), :k].to(device), DTYPES[args.pixel_dtype])
            for j, i in enumerate(idx):
                save_image(imgs[j], out / (f"{stems[i]}_k{k}.png" if several else f"{stems[i]}.png"))
                written += 1
    print(f"wrote {written} image(s) to {out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Sample class-conditional images; write PNGs, a grid and a JSON manifest of every setting."""
    device = resolve_device(args.device)
    gen, tok = _load_pair(args, device)
    if args.num_tokens is not None and args.num_tokens not in tok.prefix_lengths:
        raise CLIError(f"--num-tokens {args.num_tokens} is not a prefix length of the tokenizer; choose one of {list(tok.prefix_lengths)}")
    classes = resolve_classes(args.classes, gen.config.num_classes)
    labels = [c for c in classes for _ in range(args.per_class)]
    sampling = sampling_from_args(args, gen.generation_config)
    rng = torch.Generator(device=device).manual_seed(args.seed)
    out = Path(args.out)
    all_images, records = [], []
    prefixes = [k for k in tok.prefix_lengths]
    t0 = time.perf_counter()
    for b, chunk in enumerate(progress(list(batches(labels, args.batch_size)), "generating")):
        steps: list[torch.Tensor] = []
        callback = (lambda s, seq, end: steps.append(seq.clone())) if args.progressive else None
        with autocast_to(device, DTYPES[args.dtype]):
            ids = gen.generate(chunk, sampling, generator=rng, callback=callback, num_tokens=args.num_tokens, compile=args.compile)
            images = tok.decode(ids, DTYPES[args.pixel_dtype], compile=args.compile)
        for j, label in enumerate(chunk):
            n = b * args.batch_size + j
            name = f"{n:06d}_class{label}.png"
            save_image(images[j], out / name)
            records.append({"file": name, "class": label})
            if args.progressive:
                ends = [int(s.shape[1]) for s in steps]
                shown = [k for k in prefixes if k in ends]
                with autocast_to(device, DTYPES[args.dtype]):
                    frames = [tok.decode(ids[j : j + 1, :k], DTYPES[args.pixel_dtype])[0].cpu() for k in shown]
                save_image(make_grid(frames, nrow=len(frames)), out / f"{n:06d}_class{label}_progressive.png")
        all_images.append(images.cpu())
    elapsed = time.perf_counter() - t0
    calls = sum(1 for _, e in gen.step_positions if e <= (args.num_tokens or gen.num_tokens))
    grid = torch.cat(all_images)
    save_image(sample_grid(grid, args.per_class), out / "grid.png")
    manifest = {
        "restok_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(),
        "settings": {**sampling.to_dict(), "seed": args.seed, "batch_size": args.batch_size, "dtype": args.dtype,
                     "pixel_dtype": args.pixel_dtype, "device": str(device), "per_class": args.per_class,
                     "classes": classes, "num_tokens": args.num_tokens or gen.num_tokens, "num_model_calls": calls,
                     "compile": args.compile},
        "generator": gen.identity(),
        "tokenizer": tok.identity(),
        "images": records,
        "seconds": round(elapsed, 3),
    }
    write_json(out / "manifest.json", manifest)
    print(f"wrote {len(labels)} image(s), grid.png and manifest.json to {out} ({elapsed:.1f}s, {calls} calls per batch)")
    return 0


def cmd_vary(args: argparse.Namespace) -> int:
    """Coarse-kept variations of one image: its first ``--keep`` tokens kept, the finer levels sampled."""
    device = resolve_device(args.device)
    gen, tok = _load_pair(args, device)
    steps = [e for _, e in gen.step_positions]
    if args.keep not in steps:
        raise CLIError(f"--keep {args.keep} is not a step boundary of this generator; choose one of {steps}")
    try:
        original = load_image(args.image, tok.config.image_size)
    except ImageLoadError as e:
        raise CLIError(str(e)) from None
    (label,) = resolve_classes([args.classes], gen.config.num_classes)
    sampling = sampling_from_args(args, gen.generation_config)
    x = original[None].to(device)
    ids = tok.encode(x)[:, : args.keep]
    with autocast_to(device, DTYPES[args.dtype]):
        out = gen.generate([label] * args.num, sampling, generator=torch.Generator(device).manual_seed(args.seed), prefix=ids)
        images = tok.decode(out, DTYPES[args.pixel_dtype]).cpu()
        coarse = tok.decode(ids, DTYPES[args.pixel_dtype]).cpu()[0] if args.keep in tok.prefix_lengths else None
    dest = Path(args.out)
    stem = Path(args.image).stem
    for i, im in enumerate(images):
        save_image(im, dest / f"{stem}_keep{args.keep}_{i:02d}.png")
    strip = [original] + ([coarse] if coarse is not None else []) + list(images)
    save_image(make_grid(torch.stack(strip), nrow=len(strip)), dest / f"{stem}_keep{args.keep}_strip.png")
    write_json(dest / f"{stem}_keep{args.keep}.json", {"image": str(args.image), "keep": args.keep, "class": label, "seed": args.seed,
               "sampling": sampling.to_dict(), "kept_ids": ids[0].tolist(), "generator": gen.identity(), "tokenizer": tok.identity()})
    print(f"wrote {args.num} variations keeping {args.keep} of {tok.num_tokens} tokens, and the strip "
          f"(original{', coarse' if coarse is not None else ''}, variations) to {dest}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert an official checkpoint (Hub layout or raw training file) into this package's format."""
    from .convert import convert_checkpoint

    kind, dropped = convert_checkpoint(args.src, args.dst, kind=args.kind, config=args.config)
    print(f"converted {kind} {args.src} -> {args.dst}")
    if dropped:
        groups: dict[str, int] = {}
        for k in dropped:
            head = k.split(".")[0] if not k.startswith("decoder.") else k
            groups[head] = groups.get(head, 0) + 1
        print("dropped training-only tensors: " + ", ".join(f"{g} ({n})" for g, n in sorted(groups.items())))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the offline demo on the embedded models and say where its outputs are."""
    from .demo import run_demo

    if args.quick:
        args.num_eval, args.per_class = min(args.num_eval, 100), min(args.per_class, 4)
    f = run_demo(args.out, args.tokenizer, args.generator, args.num_eval, args.per_class, args.cfg_scale, args.seed)
    psnr = ", ".join(f"{k} tokens {v:.1f} dB" for k, v in f["psnr_db_by_tokens"].items())
    print(f"held-out PSNR: {psnr}")
    print(f"wrote {Path(args.out) / 'report.html'} (and report.md, reconstructions.png, samples.png, progressive.png) "
          f"in {f['timings']['total_s']:.1f} s")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """Start the web demo and serve until interrupted."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CLIError("restok app needs Gradio: pip install 'restok[app]'") from None
    from .app import build_app

    device = resolve_device(args.device)
    generator = None if args.generator.lower() == "none" else args.generator
    demo = build_app(args.tokenizer, generator, device=device)
    _, local_url, share_url = demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                                          prevent_thread_lock=True, quiet=True)
    print(f"restok app running at {local_url}" + (f" (public: {share_url})" if share_url else "") + "; Ctrl+C stops it", flush=True)
    try:
        demo.block_thread()
    finally:
        demo.close()
    return 0


def _count(model_cls: type, cfg: object) -> int:
    """Parameter count of a model built on the meta device (no memory or init cost)."""
    with torch.device("meta"):
        return sum(p.numel() for p in model_cls(cfg).parameters())


def cmd_info(args: argparse.Namespace) -> int:
    """Print the presets and run a seeded tokenize -> decode -> generate round trip on the tiny presets."""
    print(f"restok {__version__} (torch {torch.__version__})")
    print("\ntokenizer presets:")
    for name, cfg in TOKENIZER_PRESETS.items():
        print(f"  {name:14s} {cfg.image_size:4d}px  {cfg.num_tokens:4d} tokens  prefixes {list(cfg.prefix_lengths)}  "
              f"{_count(ResTok, cfg):>12,d} params")
    print("\ngenerator presets:")
    for name, g in GENERATOR_PRESETS.items():
        print(f"  {name:14s} {g.n_layer:3d} layers x {g.dim:5d}  {g.num_tokens:4d} tokens in {g.num_steps} calls  "
              f"{_count(HARGenerator, g):>12,d} params")
    torch.manual_seed(args.seed)
    tok = ResTok.from_preset("restok-tiny").eval()
    gen = HARGenerator.from_preset("har-tiny").eval()
    images = torch.rand(2, 3, tok.config.image_size, tok.config.image_size, generator=torch.Generator().manual_seed(args.seed))
    t0 = time.perf_counter()
    ids = tok.encode(images)
    recon = {k: tok.decode(ids[:, :k]) for k in tok.prefix_lengths}
    t1 = time.perf_counter()
    samples = gen.generate([0, 1], RELEASED_RECIPE, generator=torch.Generator().manual_seed(args.seed))
    t2 = time.perf_counter()
    print("\nround trip on untrained tiny presets (random weights; shapes and timings only):")
    print(f"  encode {list(images.shape)} -> ids {list(ids.shape)}; decode prefixes {list(recon)} in {t1 - t0:.2f}s")
    print(f"  HAR generate 2 samples: {Hy.har_num_steps(gen.num_tokens, gen.config.ar_tokens)} calls, "
          f"ids {list(samples.shape)} in {t2 - t1:.2f}s")
    return 0


# ----------------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    p = argparse.ArgumentParser(prog="restok", description="ResTok tokenizer and HAR generator (arXiv 2601.03955).")
    p.add_argument("--version", action="version", version=f"restok {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("reconstruct", help="reconstruct images from k tokens (or the coarse-to-fine strip)")
    s.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, ...)")
    s.add_argument("--tokenizer", required=True, help="tokenizer directory, file or Hub id")
    s.add_argument("--tokens", default=None, help="tokens to keep: a prefix length (4, 8, ..., 128) or 'all' (default: all tokens)")
    s.add_argument("--out", required=True, help="output directory")
    add_model_options(s)
    s.set_defaults(func=cmd_reconstruct)

    s = sub.add_parser("tokenize", help="encode images to token ids (.npz), all tokens or an adaptive budget per image")
    s.add_argument("images", nargs="+")
    s.add_argument("--tokenizer", required=True, help="tokenizer directory, file or Hub id")
    s.add_argument("--out", required=True, help="output .npz file (ids (N, L) with -1 past each image's length, lengths, files)")
    s.add_argument("--target-psnr", type=float, default=None, help="keep per image the shortest prefix reaching this PSNR (dB)")
    s.add_argument("--target-ssim", type=float, default=None, help="... or this SSIM")
    s.add_argument("--max-tokens", type=int, default=None, help="cap of the adaptive budget")
    add_model_options(s)
    s.set_defaults(func=cmd_tokenize)

    s = sub.add_parser("detokenize", help="decode token ids (.npz from 'tokenize') to images")
    s.add_argument("codes", help=".npz written by 'restok tokenize'")
    s.add_argument("--tokenizer", default=None, help="override the tokenizer recorded in the .npz")
    s.add_argument("--tokens", default=None, help="decode a prefix (a length, or 'all' for every length an image keeps); "
                                                  "default: each image from its own length")
    s.add_argument("--out", required=True, help="output directory")
    add_model_options(s)
    s.set_defaults(func=cmd_detokenize)

    s = sub.add_parser("generate", help="class-conditional generation (HAR, 9 calls for 128 tokens)")
    s.add_argument("--generator", required=True, help="generator directory, file or Hub id")
    s.add_argument("--tokenizer", required=True, help="tokenizer directory, file or Hub id")
    s.add_argument("--classes", nargs="+", required=True,
                   help='class ids or names, e.g. 207 360 or "golden retriever" otter (ImageNet names for 1,000-class models)')
    s.add_argument("--per-class", type=int, default=1, help="images per class (default: 1)")
    s.add_argument("--num-tokens", type=int, default=None, help="stop after the call that completes this many tokens (fewer calls)")
    add_sampling_options(s)
    add_compile_option(s)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--progressive", action="store_true", help="also write what each HAR step decodes to, coarse to fine")
    s.add_argument("--out", required=True, help="output directory")
    add_model_options(s)
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("vary", help="coarse-kept variations: keep an image's first k tokens, sample the finer levels")
    s.add_argument("image", help="image file")
    s.add_argument("--generator", required=True, help="generator directory, file or Hub id")
    s.add_argument("--tokenizer", required=True, help="tokenizer directory, file or Hub id")
    s.add_argument("--keep", type=int, required=True, help="tokens kept (a level boundary: 1, 2, 4, 8, ...)")
    s.add_argument("--classes", required=True, help="class id or name of the variations")
    s.add_argument("--num", type=int, default=8, help="variations (default: 8)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="output directory")
    add_sampling_options(s)
    add_model_options(s)
    s.set_defaults(func=cmd_vary)

    s = sub.add_parser("convert", help="convert an official checkpoint into this package's format")
    s.add_argument("src", help="official directory, weights file (e.g. ema_model/pytorch_model.bin) or Hub id")
    s.add_argument("dst", help="output directory")
    s.add_argument("--kind", default="auto", choices=["auto", "tokenizer", "generator"])
    s.add_argument("--config", default=None, help="official config (JSON/YAML) when it is not beside the weights")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("demo", help="the embedded MNIST models: coarse-to-fine reconstructions, samples, report (offline)")
    s.add_argument("--out", default="restok-demo", help="output folder (default: restok-demo)")
    s.add_argument("--tokenizer", default="restok-tiny-mnist", help="tokenizer (default: the embedded one)")
    s.add_argument("--generator", default="har-tiny-mnist", help="generator (default: the embedded one)")
    s.add_argument("--num-eval", type=int, default=1000, help="held-out digits for the PSNR table (default: all 1000)")
    s.add_argument("--per-class", type=int, default=8, help="generated digits per class (default: 8)")
    s.add_argument("--cfg-scale", type=float, default=2.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quick", action="store_true", help="100 held-out digits and 4 samples per class")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("app", help="local web demo (Gradio): tokenizer and generator tabs (pip install 'restok[app]')")
    s.add_argument("--tokenizer", default="restok-tiny-mnist", help="tokenizer (default: the embedded one; Hub id, folder, file)")
    s.add_argument("--generator", default="har-tiny-mnist", help="generator (default: the embedded one; 'none' for none)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    s.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    s.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    s.set_defaults(func=cmd_app)

    s = sub.add_parser("info", help="show presets and run a quick round trip on the tiny presets")
    s.add_argument("--seed", type=int, default=0, help="seed of the tiny models and inputs")
    s.set_defaults(func=cmd_info)

    add_train_commands(sub)
    add_eval_commands(sub)
    add_plot_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``restok`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # key=value overrides may sit anywhere among the options of 'train' (argparse only takes one run of them)
        if getattr(args, "command", None) == "train" and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        args = parser.parse_args([*(argv or []), "info"])
    if getattr(args, "batch_size", 1) < 1:
        parser.error("--batch-size must be >= 1")
    if getattr(args, "per_class", 1) < 1:
        parser.error("--per-class must be >= 1")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory (try a smaller --batch-size)", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - every failure reaches the user as one message, the traceback only with --debug
        if args.debug:
            raise
        expected = isinstance(e, (CLIError, ValueError, OSError, RuntimeError, ImportError))
        text = str(e) or type(e).__name__
        print(f"error: {text}" if expected else f"error: {type(e).__name__}: {text} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
