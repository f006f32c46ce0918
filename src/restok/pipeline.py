"""``ResTokPipeline``: a tokenizer and a generator behind two calls, from class ids or names to PIL images, and from
PIL images, paths or tensors to their reconstructions (diffusers-style).

    >>> pipe = ResTokPipeline.from_pretrained("restok-tiny-mnist", "har-tiny-mnist")
    >>> images = pipe([3, 7], seed=0)                      # list of PIL images
    >>> coarse = pipe.reconstruct(images, tokens=8)         # from the first 8 tokens
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from .classes import class_names_for, resolve_classes
from .generator import HARGenerator
from .images import eval_transform, load_image, pil_to_tensor, to_pil
from .sampling import SamplingConfig
from .tokenizer import ResTok

__all__ = ["ResTokPipeline", "check_compatible"]

ImageLike = Image.Image | str | os.PathLike | torch.Tensor


def check_compatible(tokenizer: ResTok, generator: HARGenerator) -> None:
    """Raise a ValueError unless ``generator`` samples ``tokenizer``'s tokens (same codebook and token count)."""
    if generator.config.vocab_size != tokenizer.codebook_size or generator.num_tokens != tokenizer.num_tokens:
        raise ValueError(
            f"generator ({generator.config.vocab_size} codes, {generator.num_tokens} tokens) does not match the tokenizer "
            f"({tokenizer.codebook_size} codes, {tokenizer.num_tokens} tokens): use the tokenizer the generator was trained on"
        )


class ResTokPipeline:
    """A :class:`~restok.ResTok` and (optionally) a :class:`~restok.HARGenerator` trained on its tokens."""

    def __init__(self, tokenizer: ResTok, generator: HARGenerator | None = None, class_names: Sequence[str] | None = None) -> None:
        if generator is not None:
            check_compatible(tokenizer, generator)
        self.tokenizer, self.generator = tokenizer.eval(), generator.eval() if generator is not None else None
        n = generator.config.num_classes if generator is not None else 0
        self.class_names = tuple(class_names) if class_names is not None else class_names_for(n)

    @classmethod
    def from_pretrained(cls, tokenizer: str | os.PathLike, generator: str | os.PathLike | None = None, **kwargs: Any) -> "ResTokPipeline":
        """Load both models (embedded names, local folders/files or Hub ids); ``kwargs`` go to both ``from_pretrained``
        (``device``, ``torch_dtype``, ``revision``, ``local_files_only``, ...)."""
        tok = ResTok.from_pretrained(tokenizer, **kwargs)
        gen = HARGenerator.from_pretrained(generator, **kwargs) if generator is not None else None
        return cls(tok, gen)

    @property
    def device(self) -> torch.device:
        """Where the models run."""
        return self.tokenizer.device

    def to(self, device: str | torch.device) -> "ResTokPipeline":
        """Move both models."""
        self.tokenizer.to(device)
        if self.generator is not None:
            self.generator.to(device)
        return self

    # -------------------------------------------------------------------------------- generation
    def class_ids(self, classes: Sequence[int | str] | int | str) -> list[int]:
        """Class ids from ids or names (ImageNet names for 1,000-class generators), or a ValueError naming the bad ones."""
        gen = self._need_generator()
        if isinstance(classes, (int, str)):
            classes = [classes]
        return resolve_classes(list(classes), gen.config.num_classes, self.class_names)

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
        **sampling_changes: Any,
    ) -> torch.Tensor:
        """Token ids (N, L) of ``num_images_per_class`` samples of each class, in class order (the generator's recipe,
        or ``sampling``, with ``sampling_changes`` such as ``cfg_scale=2.0``).

        Batches of ``batch_size`` are drawn one after the other from one ``torch.Generator`` seeded with ``seed``, as
        ``restok generate --seed S --batch-size B`` does, so the same settings give the CLI's images.
        ``callback(batch, step, tokens_so_far, end)`` is called after every model call; ``compile=True`` samples through
        the compiled steps (:mod:`restok.compiled`).
        """
        gen = self._need_generator()
        if num_images_per_class < 1:
            raise ValueError(f"num_images_per_class must be >= 1, got {num_images_per_class}")
        labels = [c for c in self.class_ids(classes) for _ in range(num_images_per_class)]
        if generator is None:
            generator = torch.Generator(gen.device).manual_seed(0 if seed is None else int(seed))
        sp = (sampling or gen.generation_config).replace(**sampling_changes)
        out = []
        for b in range(0, len(labels), batch_size):
            hook = None if callback is None else (lambda s, t, e, b=b // batch_size: callback(b, s, t, e))
            out.append(gen.generate(labels[b : b + batch_size], sp, generator=generator, callback=hook, num_tokens=num_tokens,
                                    compile=compile))
        return torch.cat(out)

    @torch.no_grad()
    def __call__(self, classes: Sequence[int | str] | int | str, num_images_per_class: int = 1, **kwargs: Any) -> list[Image.Image]:
        """PIL images of ``num_images_per_class`` samples of each class (ids or names); keywords as :meth:`generate_ids`."""
        ids = self.generate_ids(classes, num_images_per_class, **kwargs)
        return self.decode(ids, compile=kwargs.get("compile", False))

    @torch.no_grad()
    def vary(self, image: ImageLike, keep: int, classes: int | str, num: int = 8, *, seed: int = 0,
             sampling: SamplingConfig | None = None, **sampling_changes: Any) -> list[Image.Image]:
        """Coarse-kept variations: ``num`` images that keep ``image``'s first ``keep`` tokens (a level boundary) and
        sample the finer levels for class ``classes`` (the HAR steps continue from ``keep``)."""
        gen = self._need_generator()
        ids = self.encode(image)[:1, :keep]  # (1, keep)
        (label,) = self.class_ids(classes)
        sp = (sampling or gen.generation_config).replace(**sampling_changes)
        out = gen.generate([label] * num, sp, generator=torch.Generator(gen.device).manual_seed(int(seed)), prefix=ids)
        return self.decode(out)

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
                continue
            if isinstance(im, (str, os.PathLike)):
                out.append(load_image(Path(im), size))
                continue
            if not isinstance(im, Image.Image):
                raise ValueError(f"expected PIL images, paths or tensors, got {type(im).__name__}")
            out.append(pil_to_tensor(eval_transform(im, size)))
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
    def reconstruct(self, images: ImageLike | Sequence[ImageLike], tokens: int | str | None = None) -> list[Image.Image] | dict[int, list[Image.Image]]:
        """Reconstructions from ``tokens`` tokens (default: all), or ``tokens="all"`` for every prefix length
        (a dict: length -> images, coarse to fine)."""
        ids = self.encode(images)
        if tokens == "all":
            return {k: self.decode(ids, k) for k in self.tokenizer.prefix_lengths}
        k = self.tokenizer.num_tokens if tokens is None else int(tokens)
        return self.decode(ids, k)

    def _need_generator(self) -> HARGenerator:
        if self.generator is None:
            raise ValueError("this pipeline has no generator; load one with ResTokPipeline.from_pretrained(tokenizer, generator)")
        return self.generator
