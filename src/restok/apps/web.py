"""``restok app``: a local web demo (Gradio) of ResTok working -- coarse-to-fine tokens and HAR generation.

* **Tokenizer** tab: opens on an example already tokenized; upload an image or pick another example (embedded digits,
  scikit-image photos when installed); see it through the evaluation transform, its reconstructions from every
  budget the tokenizer reports (4, 8, ..., L tokens for ResTok) with PSNR, the token ids level by level and a download
  of them (the ``restok tokenize`` file format); a slider of token counts picks the large reconstruction (it snaps to
  the nearest shorter length the tokenizer decodes). With ``restok app --compare OTHER`` (any family: TiTok,
  One-D-Piece, LlamaGen VQ, another ResTok), a second tokenizer is shown beside it on the same image: its
  reconstructions and PSNR at each of its budgets.
* **Generator** tab: classes by id or name, the generator's own sampling recipe as default, seed, images per class;
  the progressive HAR previews appear while sampling runs (what the tokenizer decodes after each model call that
  completes a prefix), then the grid, a download and the ``restok generate`` command that makes the same images.

Bad input (a file that is not an image, a tiny image, an unknown class) is reported in the page; requests go
through Gradio's queue, two at a time. ``build_app`` makes the Blocks (tests drive them in a browser); ``app.py``
at the repository root is the entry of a Hugging Face Space.
"""

from __future__ import annotations

import html
import os
import queue
import shlex
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core import hierarchy as Hy
from ..data.classes import class_names_for
from ..data.embedded import MNISTDigits, skimage_photos
from ..data.images import (
    ImageLoadError,
    check_image_size,
    eval_transform,
    make_grid,
    pil_to_tensor,
    sample_grid,
    save_image,
    to_pil,
)
from ..data.token_files import TokenFile, write_token_file
from ..eval.metrics import psnr
from ..models.auto import load_generator, load_tokenizer
from ..pipelines import ResTokPipeline
from ..runtime.processes import resolve_device
from ..sampling import CFG_SCHEDULES, SAMPLING_FIELDS

__all__ = [
    "build_app",
    "DemoBackend",
    "tokenize_image",
    "snap_tokens",
    "MIN_IMAGE_SIDE",
    "MAX_CLASSES",
    "MAX_PER_CLASS",
]

MIN_IMAGE_SIDE = 8  # smaller images are refused (a few pixels say nothing about a tokenizer)
MAX_CLASSES, MAX_PER_CLASS = 16, 8  # one request's size, so that a page cannot ask for hours of sampling
BATCH_SIZE = 16  # as ``restok generate``'s default, so the echoed command gives the same images


def _examples(size: int) -> dict[str, Image.Image]:
    """Example images: held-out embedded digits, and scikit-image's photos when it is installed."""
    out: dict[str, Image.Image] = {}
    test = MNISTDigits("test", 32)
    for i in (3, 250, 420, 777):
        item = test[i]
        out[f"held-out digit {item['label']} (#{i})"] = to_pil(item["image"])
    try:
        names, photos = skimage_photos(max(size, 64))
        out.update({f"photo: {n}": to_pil(p) for n, p in zip(names, photos)})
    except Exception:  # noqa: BLE001 - scikit-image not installed: digits only
        pass
    return out


def _open_image(path: str | None, example: str | None, examples: dict[str, Image.Image]) -> tuple[Image.Image, str]:
    """The image to tokenize and its name, or an ImageLoadError that says what is wrong with it."""
    if path:
        try:
            with Image.open(path) as im:
                check_image_size(im)
                im.load()
                img = im.copy()
        except ImageLoadError as e:
            raise ImageLoadError(f"{Path(path).name}: {e}") from None
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds for files that are not images
            raise ImageLoadError(f"{Path(path).name} is not an image PIL can read ({type(e).__name__})") from None
        name = Path(path).name
    elif example:
        if example not in examples:
            raise ImageLoadError(f"unknown example {example!r}")
        img, name = examples[example], example
    else:
        raise ImageLoadError("upload an image or pick an example first")
    if min(img.size) < MIN_IMAGE_SIDE:
        raise ImageLoadError(
            f"{name} is too small ({img.size[0]} x {img.size[1]} px); give at least {MIN_IMAGE_SIDE} px a side"
        )
    return img, name


@torch.no_grad()
def tokenize_image(tok: Any, img: Image.Image) -> dict[str, Any]:
    """What the tokenizer tab shows: the prepared image, ids, reconstructions and PSNR for every prefix length."""
    x = pil_to_tensor(eval_transform(img, tok.config.image_size))[None].to(tok.device)  # (1, 3, S, S)
    ids = tok.encode(x)  # (1, L)
    recons = {k: tok.decode(ids[:, :k]) for k in tok.prefix_lengths}  # each (1, 3, S, S)
    return {
        "image": x[0].cpu(),
        "ids": ids[0].cpu(),
        "recons": {k: r[0].cpu() for k, r in recons.items()},
        "psnr": {k: float(psnr(torch.round(r * 255) / 255, x)[0]) for k, r in recons.items()},
    }


def _ids_html(ids: torch.Tensor, L: int) -> str:
    """Token ids level by level (level sizes 1, 1, 2, 4, ...; one row of L for a tokenizer of another length), as an
    HTML table."""
    rows = []
    bounds = Hy.latent_level_bounds(L) if Hy.is_power_of_two(L) and L >= 2 else [(0, L)]
    for lvl, (a, b) in enumerate(bounds):
        cells = " ".join(str(int(v)) for v in ids[a:b])
        rows.append(
            f"<tr><td>level {lvl}</td><td>{a}&ndash;{b - 1}</td><td style='font-family:monospace'>{cells}</td></tr>"
        )
    return (
        "<table id='ids-table'><tr><th>level</th><th>positions</th><th>token ids</th></tr>" + "".join(rows) + "</table>"
    )


def _psnr_html(scores: dict[int, float], table_id: str = "psnr-table", title: str = "") -> str:
    rows = "".join(f"<tr><td>{k}</td><td class='psnr'>{v:.2f}</td></tr>" for k, v in scores.items())
    head = f"<p><b>{html.escape(title)}</b></p>" if title else ""
    return f"{head}<table id='{table_id}'><tr><th>tokens</th><th>PSNR (dB)</th></tr>{rows}</table>"


def snap_tokens(tok: Any, k: float) -> int:
    """The token count the slider means: ``k`` if the tokenizer decodes it, else the nearest shorter budget it reports
    (the shortest when ``k`` is below all of them)."""
    k = int(round(float(k)))
    if tok.decodable(k):
        return k
    shorter = [b for b in tok.prefix_lengths if b <= k]
    return shorter[-1] if shorter else tok.prefix_lengths[0]


def _upscale(img: Image.Image, at_least: int = 192) -> Image.Image:
    """Small images (32 px digits) shown larger, with hard pixel edges."""
    f = max(1, at_least // max(img.size))
    return img.resize((img.size[0] * f, img.size[1] * f), Image.NEAREST) if f > 1 else img


class DemoBackend:
    """What the two tabs compute, apart from the page: models, examples and a folder for the downloads."""

    def __init__(
        self,
        tokenizer: Any = "restok-tiny-mnist",
        generator: Any = "har-tiny-mnist",
        device: str | torch.device = "cpu",
        compare: Sequence[Any] = (),
    ) -> None:
        self.tok = load_tokenizer(tokenizer, device=device) if isinstance(tokenizer, (str, Path)) else tokenizer
        others = [load_tokenizer(t, device=device) if isinstance(t, (str, Path)) else t for t in compare]
        self.others = {f"{o.provenance.source} ({type(o).family}, {o.num_tokens} tokens)": o for o in others}
        self.gen = load_generator(generator, device=device) if isinstance(generator, (str, Path)) else generator
        self.pipe = ResTokPipeline(self.tok, self.gen)
        self.tok_name = self.tok.provenance.source
        self.gen_name = self.gen.provenance.source if self.gen is not None else None
        self.prefixes = list(self.tok.prefix_lengths)
        self.examples = _examples(self.tok.config.image_size)
        self.names = class_names_for(self.gen.config.num_classes) if self.gen is not None else None
        self.workdir = Path(tempfile.mkdtemp(prefix="restok-app-"))

    # ------------------------------------------------------------------------- tokenizer tab
    def tokenize(self, path: str | None, example: str | None, tokens: float, other: str | None = None) -> tuple:
        """(status, prepared, gallery, PSNR table, ids table, ids file, large reconstruction, caption, state, slider,
        compared gallery, compared PSNR table)."""
        try:
            img, name = _open_image(path, example, self.examples)
        except ImageLoadError as e:
            return (
                f"<p id='tok-error' style='color:#b00'>&#9888; {html.escape(str(e))}</p>",
                None,
                [],
                "",
                "",
                None,
                None,
                None,
                None,
                tokens,
                [],
                "",
            )
        res = tokenize_image(self.tok, img)
        gallery = [(_upscale(to_pil(res["recons"][k])), f"{k} tokens: {res['psnr'][k]:.2f} dB") for k in self.prefixes]
        side_gallery, side_table = self.compared(img, other)
        ids_file = self.workdir / f"{Path(name).stem.replace(' ', '_').replace('/', '_')}-ids.npz"
        write_token_file(
            ids_file,
            TokenFile(
                res["ids"][None].numpy(),
                np.array([self.tok.num_tokens]),
                [name],
                str(self.tok_name),
                self.tok.config.image_size,
            ),
        )
        big, caption, k = self.shown(res, tokens)
        status = f"<p id='tok-ok'>{html.escape(name)}: {self.tok.num_tokens} tokens, prefixes {self.prefixes}</p>"
        return (
            status,
            _upscale(to_pil(res["image"])),
            gallery,
            _psnr_html(res["psnr"]),
            _ids_html(res["ids"], self.tok.num_tokens),
            str(ids_file),
            big,
            caption,
            res,
            k,
            side_gallery,
            side_table,
        )

    def compared(self, img: Image.Image, other: str | None) -> tuple[list[tuple[Image.Image, str]], str]:
        """The second tokenizer's reconstructions and PSNR table on the same image (empty when none is chosen)."""
        if not other or other not in self.others:
            return [], ""
        tok = self.others[other]
        res = tokenize_image(tok, img)
        gallery = [
            (_upscale(to_pil(res["recons"][k])), f"{k} tokens: {res['psnr'][k]:.2f} dB") for k in tok.prefix_lengths
        ]
        return gallery, _psnr_html(res["psnr"], "psnr-table-compare", other)

    @torch.no_grad()
    def shown(self, res: dict[str, Any] | None, tokens: float) -> tuple:
        """The large reconstruction, its caption and the token count actually shown, for a slider at ``tokens``."""
        if not res:
            return None, "", tokens
        k = snap_tokens(self.tok, tokens)
        if k not in res["recons"]:  # a length the tokenizer decodes but does not report (One-D-Piece): decode it now
            rec = self.tok.decode(res["ids"][None, :k].to(self.tok.device))
            res["recons"][k] = rec[0].cpu()
            res["psnr"][k] = float(psnr(torch.round(rec * 255) / 255, res["image"][None].to(rec.device))[0])
        caption = f"<p id='recon-caption'>from the first <b>{k}</b> tokens: PSNR {res['psnr'][k]:.2f} dB</p>"
        return _upscale(to_pil(res["recons"][k])), caption, k

    # ------------------------------------------------------------------------- generator tab
    def _request(
        self,
        classes: str,
        per_class: float,
        cfg_scale: float,
        schedule: str,
        cfg_start: float,
        top_k: float,
        top_p: float,
        temperature: float,
    ) -> tuple[list[int], int, Any]:
        """(class ids, images per class, sampling recipe) of a request, or a ValueError saying what is wrong with it."""
        specs = [c.strip() for c in str(classes).replace(";", ",").split(",") if c.strip()]
        if not specs:
            raise ValueError("give at least one class id or name")
        ids_of = self.pipe.class_ids(specs)
        if len(ids_of) > MAX_CLASSES or not 1 <= int(per_class) <= MAX_PER_CLASS:
            raise ValueError(f"at most {MAX_CLASSES} classes and {MAX_PER_CLASS} images per class per request")
        sampling = self.gen.generation_config.replace(
            cfg_scale=float(cfg_scale),
            cfg_schedule=schedule,
            cfg_start=float(cfg_start),
            top_k=int(top_k),
            top_p=float(top_p),
            temperature=float(temperature),
        )
        return ids_of, int(per_class), sampling

    def _settings_html(self, ids_of: list[int], n: int, seed: int, sampling: Any) -> str:
        """The request's settings and the ``restok generate`` command that writes the same grid."""
        recipe = [
            arg for name in SAMPLING_FIELDS for arg in ("--" + name.replace("_", "-"), str(getattr(sampling, name)))
        ]
        cmd = [
            "restok",
            "generate",
            "--generator",
            str(self.gen_name),
            "--tokenizer",
            str(self.tok_name),
            "--classes",
            *[str(c) for c in ids_of],
            "--per-class",
            str(n),
            "--seed",
            str(seed),
            "--batch-size",
            str(BATCH_SIZE),
            *recipe,
            "--out",
            "samples/",
        ]
        shown = ", ".join(f"{c} ({self.names[c]})" if self.names else str(c) for c in ids_of)
        return (
            f"<p>classes {html.escape(shown)}; {n} per class; seed {seed}; {self.gen.num_steps} model calls per image. "
            f"The same images from the command line (<code>samples/grid.png</code>):</p>"
            f"<pre id='gen-command' style='white-space:pre-wrap'>{html.escape(shlex.join(cmd))}</pre>"
        )

    def _sampled(
        self, ids_of: list[int], n: int, sampling: Any, seed: int, result: dict[str, Any], previews: list
    ) -> Iterator[str]:
        """Sample in a thread; after each model call that completes a prefix, add its decoded preview to ``previews``
        and yield a status line. ``result`` receives the ids (or the error)."""
        events: queue.Queue = queue.Queue()

        def work() -> None:
            try:
                result["ids"] = self.pipe.generate_ids(
                    ids_of,
                    n,
                    sampling=sampling,
                    seed=seed,
                    batch_size=BATCH_SIZE,
                    callback=lambda b, s, t, e: events.put((b, s, t.clone(), e)),
                )
            except Exception as e:  # noqa: BLE001 - reported in the page
                result["error"] = f"{type(e).__name__}: {e}"
            events.put(None)

        threading.Thread(target=work, daemon=True).start()
        steps = self.gen.num_steps
        while (item := events.get()) is not None:
            b, s, tokens, end = item
            if end not in self.prefixes:
                continue
            frames = self.tok.decode(tokens)  # (batch, 3, S, S) from the first `end` tokens
            grid = _upscale(to_pil(make_grid(frames, nrow=min(8, len(frames)))))
            previews.append((grid, f"batch {b + 1}: {end} tokens after call {s + 1}/{steps}"))
            yield (
                f"<p id='gen-progress'>sampling: batch {b + 1}, {end} of {self.gen.num_tokens} tokens after model "
                f"call {s + 1} of {steps}</p>"
            )

    def generate(
        self,
        classes: str,
        per_class: float,
        seed: float,
        cfg_scale: float,
        schedule: str,
        cfg_start: float,
        top_k: float,
        top_p: float,
        temperature: float,
    ) -> Iterator[tuple]:
        """Yields (status, previews, grid, grid file, settings): once per model call that completes a prefix (sampling
        runs in a thread meanwhile), then the result."""

        def fail(msg: str) -> tuple:
            return (f"<p id='gen-error' style='color:#b00'>&#9888; {html.escape(msg)}</p>", [], None, None, "")

        if self.gen is None:
            yield fail("this app has no generator (start it with --generator)")
            return
        try:
            ids_of, n, sampling = self._request(
                classes, per_class, cfg_scale, schedule, cfg_start, top_k, top_p, temperature
            )
        except ValueError as e:
            yield fail(str(e))
            return
        result: dict[str, Any] = {}
        previews: list[tuple[Image.Image, str]] = []
        for status in self._sampled(ids_of, n, sampling, int(seed), result, previews):
            yield (status, list(previews), None, None, "")
        if "error" in result:
            yield fail(result["error"])
            return
        images = self.tok.decode(result["ids"]).cpu()
        grid = sample_grid(images, n)
        grid_file = self.workdir / f"grid-{len(list(self.workdir.glob('grid-*.png'))):04d}-seed{int(seed)}.png"
        save_image(grid, grid_file)
        yield (
            f"<p id='gen-done'>done: {len(images)} images</p>",
            list(previews),
            _upscale(to_pil(grid), 256),
            str(grid_file),
            self._settings_html(ids_of, n, int(seed), sampling),
        )


def _image_inputs(gr: Any, be: DemoBackend) -> tuple[Any, ...]:
    """The tokenizer tab's left column: upload, example, run button, status and the prepared image."""
    upload = gr.File(label="upload an image", type="filepath", elem_id="tok-upload")
    example = gr.Dropdown(
        choices=list(be.examples),
        value=list(be.examples)[0],
        label="or pick an example",
        elem_id="tok-example",
    )
    run = gr.Button("Tokenize", variant="primary", elem_id="tok-run")
    status = gr.HTML(elem_id="tok-status")
    prepared = gr.Image(label="prepared (evaluation transform)", type="pil", interactive=False, elem_id="tok-prepared")
    return upload, example, run, status, prepared


def _comparison(gr: Any, be: DemoBackend) -> tuple[Any, Any, Any]:
    """The side-by-side group (shown when other tokenizers are loaded): which one, its gallery and its PSNR table."""
    with gr.Group(visible=bool(be.others)):
        other = gr.Dropdown(
            choices=["none", *be.others],
            value=next(iter(be.others), "none"),
            label="side by side with",
            elem_id="tok-compare",
        )
        with gr.Row():
            side_gallery = gr.Gallery(
                label="the other tokenizer, coarse to fine",
                columns=6,
                object_fit="contain",
                elem_id="tok-compare-gallery",
            )
            side_table = gr.HTML(elem_id="tok-compare-psnr")
    return other, side_gallery, side_table


def _tokenizer_tab(gr: Any, be: DemoBackend, demo: Any) -> None:
    """The tokenizer tab: the opening example, uploads, the token slider, the comparison; wired to ``be``."""
    tok, prefixes = be.tok, be.prefixes
    with gr.Tab("Tokenizer"):
        with gr.Row():
            with gr.Column(scale=1):
                upload, example, run, status, prepared = _image_inputs(gr, be)
            with gr.Column(scale=1):
                slider = gr.Slider(
                    prefixes[0],
                    tok.num_tokens,
                    value=tok.num_tokens,
                    step=1,
                    label=f"tokens kept ({tok.describe_lengths()}; other values snap to the next shorter one)",
                    elem_id="tok-slider",
                )
                big = gr.Image(label="reconstruction", type="pil", interactive=False, elem_id="tok-recon")
                caption = gr.HTML(elem_id="tok-caption")
        gallery = gr.Gallery(
            label="coarse to fine: every prefix", columns=len(prefixes), object_fit="contain", elem_id="tok-gallery"
        )
        other, side_gallery, side_table = _comparison(gr, be)
        with gr.Row():
            psnr_table = gr.HTML(elem_id="tok-psnr")
            ids_table = gr.HTML(elem_id="tok-ids")
        ids_file = gr.File(label="token ids (.npz, the restok tokenize format)", elem_id="tok-download")
        state = gr.State()
        outputs = [status, prepared, gallery, psnr_table, ids_table, ids_file, big, caption, state, slider]
        outputs += [side_gallery, side_table]
        run.click(be.tokenize, [upload, example, slider, other], outputs)
        other.change(be.tokenize, [upload, example, slider, other], outputs)
        slider.change(be.shown, [state, slider], [big, caption, slider])
        demo.load(be.tokenize, [upload, example, slider, other], outputs)  # the page opens on a tokenized example


def _sampling_controls(gr: Any, gc: Any) -> list[Any]:
    """The recipe's controls, set to the generator's own recipe ``gc`` (None: no guidance): scale, schedule, start,
    top-k, top-p, temperature."""
    with gr.Accordion("sampling (default: the generator's own recipe)", open=False):
        cfg_scale = gr.Slider(
            1.0, 10.0, value=gc.cfg_scale if gc else 1.0, step=0.05, label="guidance scale", elem_id="gen-cfg"
        )
        schedule = gr.Dropdown(
            sorted(CFG_SCHEDULES), value=gc.cfg_schedule if gc else "constant", label="guidance schedule"
        )
        cfg_start = gr.Slider(0.0, 1.0, value=gc.cfg_start if gc else 0.0, step=0.05, label="step schedule starts at")
        top_k = gr.Number(value=gc.top_k if gc else 0, precision=0, label="top-k (0 = off)")
        top_p = gr.Slider(0.01, 1.0, value=gc.top_p if gc else 1.0, step=0.01, label="top-p (1 = off)")
        temperature = gr.Slider(0.1, 2.0, value=gc.temperature if gc else 1.0, step=0.05, label="temperature")
    return [cfg_scale, schedule, cfg_start, top_k, top_p, temperature]


def _generator_tab(gr: Any, be: DemoBackend) -> None:
    """The generator tab: classes, count, seed and recipe; progressive previews, the grid and its settings."""
    gen = be.gen
    with gr.Tab("Generator"):
        gc = gen.generation_config if gen is not None else None
        default = (
            "golden retriever, 360"
            if be.names
            else ", ".join(str(c) for c in range(min(4, gen.config.num_classes if gen else 0)))
        )
        with gr.Row():
            with gr.Column(scale=1):
                classes = gr.Textbox(
                    value=default,
                    label="classes (ids" + (" or ImageNet names" if be.names else "") + ", comma-separated)",
                    elem_id="gen-classes",
                )
                per_class = gr.Slider(
                    1, MAX_PER_CLASS, value=2, step=1, label="images per class", elem_id="gen-per-class"
                )
                seed = gr.Number(value=0, precision=0, label="seed", elem_id="gen-seed")
                recipe = _sampling_controls(gr, gc)
                go = gr.Button("Generate", variant="primary", elem_id="gen-run")
                gen_status = gr.HTML(elem_id="gen-status")
            with gr.Column(scale=2):
                previews = gr.Gallery(
                    label="progressive HAR previews, as they are produced",
                    columns=2,
                    object_fit="contain",
                    elem_id="gen-previews",
                )
                grid = gr.Image(label="samples", type="pil", interactive=False, elem_id="gen-grid")
                grid_file = gr.File(label="download the grid", elem_id="gen-download")
                settings = gr.HTML(elem_id="gen-settings")
        go.click(be.generate, [classes, per_class, seed, *recipe], [gen_status, previews, grid, grid_file, settings])


def build_app(
    tokenizer: Any = "restok-tiny-mnist",
    generator: Any = "har-tiny-mnist",
    device: str | torch.device = "cpu",
    compare: Sequence[Any] = (),
) -> Any:
    """The Gradio Blocks of the demo on the given models (embedded names, folders, Hub ids, or loaded models);
    ``compare``: tokenizers of any family to show beside the first on the same image."""
    import gradio as gr

    be = DemoBackend(tokenizer, generator, device, compare)
    tok, gen, prefixes = be.tok, be.gen, be.prefixes
    with gr.Blocks(title="ResTok demo") as demo:
        gr.Markdown(
            f"# ResTok: hierarchical residual 1-D tokens\nTokenizer `{be.tok_name}` ({tok.num_tokens} tokens, prefixes "
            f"{prefixes})" + (f", generator `{be.gen_name}` ({gen.num_steps} model calls per image)." if gen else ".")
        )
        _tokenizer_tab(gr, be, demo)
        _generator_tab(gr, be)
    demo.queue(default_concurrency_limit=2)
    return demo


@dataclass(frozen=True, kw_only=True)
class AppRequest:
    """``restok app``: the web demo on a tokenizer and a generator (``"none"``: the tokenizer tab alone), with other
    tokenizers side by side, served on ``host:port``."""

    tokenizer: str = "restok-tiny-mnist"
    generator: str = "har-tiny-mnist"
    compare: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    device: str = "auto"


def serve(req: AppRequest, announce: Callable[[str], None] = print) -> None:
    """Build the app, start serving, ``announce`` where, and serve until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise RuntimeError("restok app needs Gradio: pip install 'restok[app]'") from None
    generator = None if req.generator.lower() == "none" else req.generator
    demo = build_app(req.tokenizer, generator, device=resolve_device(req.device), compare=req.compare)
    _, local_url, share_url = demo.launch(
        server_name=req.host, server_port=req.port, share=req.share, prevent_thread_lock=True, quiet=True
    )
    announce(
        f"restok app running at {local_url}" + (f" (public: {share_url})" if share_url else "") + "; Ctrl+C stops it"
    )
    try:
        demo.block_thread()
    finally:
        demo.close()
