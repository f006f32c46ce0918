"""``ResTokPipeline``: a tokenizer and a generator behind two calls, from class ids or names to PIL images, and from
PIL images, paths or tensors to their reconstructions and token files (diffusers-style). Any registered tokenizer and
generator families work together if the generator samples the tokenizer's tokens.

    >>> pipe = ResTokPipeline.from_pretrained("restok-tiny-mnist", "har-tiny-mnist")
    >>> images = pipe([3, 7], seed=0)                      # list of PIL images
    >>> coarse = pipe.reconstruct(images, tokens=8)         # from the first 8 tokens
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..data.classes import class_names_for, resolve_classes
from ..data.images import eval_transform, load_image, pil_to_tensor, to_pil
from ..data.token_files import TokenFile, read_token_file, write_token_file
from ..models.auto import check_compatible, load_generator, load_tokenizer
from ..runtime.progress import progress as progress_bar
from ..runtime.seeds import check_seed
from ..sampling import CompiledSampler, SamplingConfig
from .tokens import decode_rows, encode_images, reconstructions, rows_to_decode

__all__ = ["ResTokPipeline", "check_compatible"]

ImageLike = Image.Image | str | os.PathLike | torch.Tensor


def _check_count(value: Any, name: str) -> int:
    """A count argument as an int >= 1, or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class ResTokPipeline:
    """A tokenizer and (optionally) a generator trained on its tokens (:class:`~restok.ResTok` and
    :class:`~restok.HARGenerator`, or any registered families)."""

    def __init__(self, tokenizer: Any, generator: Any | None = None, class_names: Sequence[str] | None = None) -> None:
        if generator is not None:
            check_compatible(tokenizer, generator)
        self.tokenizer, self.generator = tokenizer.eval(), generator.eval() if generator is not None else None
        n = generator.config.num_classes if generator is not None else 0
        self.class_names = tuple(class_names) if class_names is not None else class_names_for(n)
        self._samplers: dict[int, CompiledSampler] = {}  # compiled steps by batch rows, kept for later calls

    @classmethod
    def from_pretrained(
        cls, tokenizer: str | os.PathLike, generator: str | os.PathLike | None = None, **kwargs: Any
    ) -> ResTokPipeline:
        """Load both models (embedded names, local folders/files or Hub ids, of any registered family); ``kwargs`` go to
        both ``from_pretrained`` (``device``, ``torch_dtype``, ``revision``, ``local_files_only``, ...)."""
        tok = load_tokenizer(tokenizer, **kwargs)
        gen = load_generator(generator, **kwargs) if generator is not None else None
        return cls(tok, gen)

    @property
    def device(self) -> torch.device:
        """Where the models run."""
        return self.tokenizer.device

    def to(self, device: str | torch.device) -> ResTokPipeline:
        """Move both models (compiled steps are made anew for the new device)."""
        self.tokenizer.to(device)
        if self.generator is not None:
            self.generator.to(device)
        self._samplers.clear()
        return self

    # -------------------------------------------------------------------------------- generation
    def class_ids(self, classes: Sequence[int | str] | int | str) -> list[int]:
        """Class ids from ids or names (ImageNet names for 1,000-class generators), or a ValueError naming the bad
        ones."""
        gen = self._need_generator()
        if isinstance(classes, (int, str)):
            classes = [classes]
        if len(classes) == 0:
            raise ValueError("no classes given: name at least one class id or name")
        return resolve_classes(list(classes), gen.config.num_classes, self.class_names)

    def _sampler(self, rows: int, compile: bool | str) -> CompiledSampler | None:
        """The compiled steps for ``rows`` sequences, made on first use and kept (None without ``compile``)."""
        if not compile:
            return None
        if rows not in self._samplers:
            self._samplers[rows] = CompiledSampler(self._need_generator(), rows, compile)
        return self._samplers[rows]

    @torch.no_grad()
    def generate_ids(
        self,
        classes: Sequence[int | str] | int | str,
        num_images_per_class: int = 1,
        *,
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        num_tokens: int | None = None,
        batch_size: int = 16,
        callback: Any = None,
        compile: bool | str = False,
        progress: bool = False,
        **sampling_changes: Any,
    ) -> torch.Tensor:
        """Token ids (N, L) of ``num_images_per_class`` samples of each class, in class order (the generator's recipe,
        or ``sampling``, with ``sampling_changes`` such as ``cfg_scale=2.0``).

        Batches of ``batch_size`` are drawn one after the other from one ``torch.Generator`` seeded with ``seed``, as
        ``restok generate --seed S --batch-size B`` does, so the same settings give the CLI's images.
        ``callback(batch, step, tokens_so_far, end)`` is called after every model call; ``compile=True`` samples through
        compiled steps (:class:`~restok.sampling.CompiledSampler`, kept by the pipeline for its later calls);
        ``progress``: a progress bar over the batches.
        """
        gen = self._need_generator()
        _check_count(num_images_per_class, "num_images_per_class")
        _check_count(batch_size, "batch_size")
        labels = [c for c in self.class_ids(classes) for _ in range(num_images_per_class)]
        if generator is None:
            generator = torch.Generator(gen.device).manual_seed(check_seed(0 if seed is None else seed))
        sp = SamplingConfig.resolve(sampling, gen.generation_config, **sampling_changes)
        out = []
        for b in progress_bar(range(0, len(labels), batch_size), "sampling", enabled=progress, unit="batch"):
            chunk = labels[b : b + batch_size]
            hook = None if callback is None else (lambda s, t, e, b=b // batch_size: callback(b, s, t, e))
            sampler = self._sampler(len(chunk) * (2 if sp.cfg_scale > 1.0 else 1), compile)
            out.append(
                gen.generate(chunk, sp, generator=generator, callback=hook, num_tokens=num_tokens, sampler=sampler)
            )
        return torch.cat(out)

    @torch.no_grad()
    def __call__(
        self, classes: Sequence[int | str] | int | str, num_images_per_class: int = 1, **kwargs: Any
    ) -> list[Image.Image]:
        """PIL images of ``num_images_per_class`` samples of each class (ids or names); keywords as
        :meth:`generate_ids`."""
        ids = self.generate_ids(classes, num_images_per_class, **kwargs)
        return self.decode(ids, compile=kwargs.get("compile", False))

    @torch.no_grad()
    def vary_ids(
        self,
        kept: torch.Tensor,
        classes: int | str,
        num: int = 8,
        *,
        seed: int = 0,
        sampling: SamplingConfig | None = None,
        **sampling_changes: Any,
    ) -> torch.Tensor:
        """Token ids (num, L) of ``num`` samples of class ``classes`` that continue the kept prefix ``kept`` (1, k) -- a
        level boundary -- from its next HAR step, one ``torch.Generator`` seeded with ``seed``."""
        gen = self._need_generator()
        _check_count(num, "num")
        generator = torch.Generator(gen.device).manual_seed(check_seed(seed))
        (label,) = self.class_ids(classes)
        sp = SamplingConfig.resolve(sampling, gen.generation_config, **sampling_changes)
        return gen.generate([label] * num, sp, generator=generator, prefix=kept.to(gen.device))

    @torch.no_grad()
    def vary(
        self,
        image: ImageLike,
        keep: int,
        classes: int | str,
        num: int = 8,
        *,
        seed: int = 0,
        sampling: SamplingConfig | None = None,
        **sampling_changes: Any,
    ) -> list[Image.Image]:
        """Coarse-kept variations: ``num`` images that keep ``image``'s first ``keep`` tokens (a level boundary) and
        sample the finer levels for class ``classes`` (the HAR steps continue from ``keep``)."""
        self._need_generator()
        _check_count(num, "num")
        ids = self.encode(image)[:1, :keep]  # (1, keep)
        return self.decode(self.vary_ids(ids, classes, num, seed=seed, sampling=sampling, **sampling_changes))

    # -------------------------------------------------------------------------------- tokenizer
    def prepare(self, images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
        """PIL images, file paths or float tensors in [0, 1] -> (B, 3, S, S) through the evaluation transform
        (tensors must already have the tokenizer's size)."""
        if isinstance(images, torch.Tensor):
            x = images if images.dim() == 4 else images.unsqueeze(0)
            return x.to(self.device)
        if isinstance(images, (Image.Image, str, os.PathLike)):
            images = [images]
        size = self.tokenizer.config.image_size
        out = []
        for im in images:
            if isinstance(im, torch.Tensor):
                out.append(im if im.dim() == 3 else im[0])
            elif isinstance(im, (str, os.PathLike)):
                out.append(load_image(Path(im), size))
            elif isinstance(im, Image.Image):
                out.append(pil_to_tensor(eval_transform(im, size)))
            else:
                raise ValueError(f"expected PIL images, paths or tensors, got {type(im).__name__}")
        return torch.stack(out).to(self.device)

    @torch.no_grad()
    def encode(self, images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
        """Token ids (B, L) of images (any of the forms :meth:`prepare` takes)."""
        return self.tokenizer.encode(self.prepare(images))

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, tokens: int | None = None, compile: bool | str = False) -> list[Image.Image]:
        """PIL images from token ids (B, k), or from their first ``tokens`` (``compile``: see :meth:`ResTok.decode`)."""
        ids = ids if tokens is None else ids[:, :tokens]
        return [to_pil(x) for x in self.tokenizer.decode(ids.to(self.device), compile=compile).cpu()]

    @torch.no_grad()
    def reconstruct(
        self, images: ImageLike | Sequence[ImageLike], tokens: int | str | None = None
    ) -> list[Image.Image] | dict[int, list[Image.Image]]:
        """Reconstructions from ``tokens`` tokens (default: all), or ``tokens="all"`` for every prefix length
        (a dict: length -> images, coarse to fine) -- what ``restok reconstruct`` computes."""
        lengths = self.tokenizer.select_lengths(tokens)
        recons = reconstructions(self.tokenizer, self.prepare(images), lengths)
        pil = {k: [to_pil(x) for x in r.cpu()] for k, r in recons.items()}
        return pil if tokens == "all" else pil[lengths[-1]]

    @torch.no_grad()
    def tokenize(self, images: Sequence[str | os.PathLike], path: str | os.PathLike) -> TokenFile:
        """Encode image files and write their ids as a ``restok tokenize`` file at ``path`` (all tokens of each)."""
        names = [str(p) for p in images]
        x = self.prepare(names)
        ids, lengths, _ = encode_images(self.tokenizer, list(x), batch_size=len(names))
        tf = TokenFile(
            ids.numpy(), lengths.numpy(), names, self.tokenizer.provenance.source, self.tokenizer.config.image_size
        )
        write_token_file(path, tf)
        return tf

    @torch.no_grad()
    def detokenize(self, path: str | os.PathLike) -> list[Image.Image]:
        """Decode a ``restok tokenize`` file with this pipeline's tokenizer, each image from its own length."""
        tf = read_token_file(path)
        tf.check_lengths(self.tokenizer.prefix_lengths, str(path))
        decoded = {
            i: image for _, i, image in decode_rows(self.tokenizer, torch.from_numpy(tf.ids), rows_to_decode(tf, None))
        }
        return [to_pil(decoded[i].cpu()) for i in range(len(tf.files))]

    def _need_generator(self) -> Any:
        if self.generator is None:
            raise ValueError(
                "this pipeline has no generator; load one with ResTokPipeline.from_pretrained(tokenizer, generator)"
            )
        return self.generator
