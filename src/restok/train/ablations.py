"""The paper's ablations as named settings (Sec. 5.4), so that its tables are grids of names.

``ablation=NAME`` in a training config (or on the command line) applies the setting to the recipe before the
run's own ``key=value`` overrides, which still win; the run's ``config.yaml`` records the effective values.

* Table 2, network designs (pooling factor 2): ``table2-1`` the baseline (no hierarchy: one image-token level,
  latent tokens from a 1-D interpolation, no residuals), ``table2-2`` hierarchies on latent tokens, ``table2-3`` to
  ``table2-5`` 2, 3 and 4 image-token hierarchies (still without residuals), ``table2-6``/``-7``/``-8`` 4
  hierarchies with residuals on image tokens, on latent tokens, on both (ResTok). The paper's table is an image
  in the text we have: #3-#5's hierarchy counts follow its text ("the tokenizer with 4 hierarchies ... strikes a
  balance"); 5 hierarchies is ``model_overrides.hierarchy_stages=5``.
* Table 3, the pooling factor of the merges (4 hierarchies, residuals on both): ``table3-pool1`` (no pooling),
  ``table3-pool2`` (ResTok), ``table3-pool4``.
* Table 4, where the representation is aligned (on setting #8): ``table4-none``, ``table4-encoder``,
  ``table4-decoder``, ``table4-both`` (ResTok).
* Table 5, the generator: ``table5-har`` (HAR: a level per step after the first, Sec. 4) and ``table5-ar``
  (vanilla next-token AR on the same codes, App. B).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ABLATIONS", "ablation_settings"]

_RESTOK = dict(latent_hierarchy=True, hierarchy_stages=4, pooling_factor=2)
_NO_RES = dict(residual_image_tokens=False, residual_latent_tokens=False)


def _tokenizer(**model: Any) -> dict[str, Any]:
    return {"kind": "tokenizer", "model_overrides": model}


ABLATIONS: dict[str, dict[str, Any]] = {
    "table2-1": _tokenizer(latent_hierarchy=False, hierarchy_stages=1, **_NO_RES),
    "table2-2": _tokenizer(latent_hierarchy=True, hierarchy_stages=1, **_NO_RES),
    "table2-3": _tokenizer(latent_hierarchy=True, hierarchy_stages=2, **_NO_RES),
    "table2-4": _tokenizer(latent_hierarchy=True, hierarchy_stages=3, **_NO_RES),
    "table2-5": _tokenizer(**_RESTOK, **_NO_RES),
    "table2-6": _tokenizer(**_RESTOK, residual_image_tokens=True, residual_latent_tokens=False),
    "table2-7": _tokenizer(**_RESTOK, residual_image_tokens=False, residual_latent_tokens=True),
    "table2-8": _tokenizer(**_RESTOK, residual_image_tokens=True, residual_latent_tokens=True),
    **{
        f"table3-pool{f}": _tokenizer(
            **{**_RESTOK, "pooling_factor": f}, residual_image_tokens=True, residual_latent_tokens=True
        )
        for f in (1, 2, 4)
    },
    **{
        f"table4-{where}": {
            **_tokenizer(**_RESTOK, residual_image_tokens=True, residual_latent_tokens=True),
            "loss": {"alignment_weight": 0.0}
            if where == "none"
            else {"encoder_alignment": enc, "decoder_alignment": dec},
        }
        for where, enc, dec in (
            ("none", True, True),
            ("encoder", True, False),
            ("decoder", False, True),
            ("both", True, True),
        )
    },
    "table5-har": {"kind": "generator", "generator": "har"},
    "table5-ar": {"kind": "generator", "generator": "ar"},
}


def ablation_settings(name: str, kind: str) -> dict[str, Any]:
    """The config settings of the ablation ``name`` for a ``kind`` run (a ValueError names the known ones)."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; known: {', '.join(ABLATIONS)}")
    settings = dict(ABLATIONS[name])
    if settings.pop("kind") != kind:
        raise ValueError(f"ablation {name!r} is a setting of {ABLATIONS[name]['kind']} runs, not of {kind} runs")
    return settings
