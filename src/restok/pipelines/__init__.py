"""Pipelines: a tokenizer and a generator behind a few calls, from class names to images and from images to tokens,
token files and back (diffusers-style), for any registered families that fit together. Imports :mod:`restok.models`,
:mod:`restok.data` and :mod:`restok.sampling`."""

from .restok_pipeline import ResTokPipeline, check_compatible

__all__ = ["ResTokPipeline", "check_compatible"]
