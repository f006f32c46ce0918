"""KID, the metric added as one module (restok/eval/metrics/kid.py): equal, bit for bit, to torch-fidelity's
``kid_features_to_metric`` on the same features and settings; unbiased (near zero for two samples of one
distribution at small N, where FID is not); and asked for by name in every protocol (``--metric kid``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restok.eval.metrics import KID, kernel_inception_distance, metric_class
from restok.eval.metrics.fid import feature_statistics, frechet_distance

from ..helpers import require, run_cli


@pytest.mark.parametrize("n1, n2, subset", [(40, 40, 40), (60, 35, 20), (120, 90, 50)])
def test_kid_equals_torch_fidelity(n1: int, n2: int, subset: int) -> None:
    tf = require("torch_fidelity.metric_kid")
    rng = np.random.default_rng(n1 + n2)
    a, b = rng.normal(size=(n1, 16)), rng.normal(0.3, 1.2, size=(n2, 16))
    ref = tf.kid_features_to_metric(
        torch.from_numpy(a),
        torch.from_numpy(b),
        kid_subsets=7,
        kid_subset_size=subset,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
        rng_seed=2020,
        verbose=False,
    )
    mean, std = kernel_inception_distance(a, b, subsets=7, subset_size=subset, seed=2020)
    assert mean == ref["kernel_inception_distance_mean"]
    assert std == ref["kernel_inception_distance_std"]


def test_kid_is_unbiased_where_fid_is_not() -> None:
    """Two samples of one distribution: KID's mean over seeds is ~0, FID is clearly positive at this N."""
    kids, fids = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
        kids.append(kernel_inception_distance(a, b, subsets=1, subset_size=None)[0])
        fids.append(frechet_distance(*feature_statistics(a), *feature_statistics(b), method="eigh"))
    assert abs(np.mean(kids)) < 3 * np.std(kids) / np.sqrt(len(kids))  # zero within the estimate's error
    assert np.mean(fids) > 10 * np.std(fids) / np.sqrt(len(fids))  # FID's small-sample bias


def test_kid_refuses_too_few_and_mismatched_features() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        kernel_inception_distance(np.zeros((5, 4)), np.zeros((5, 3)))
    assert metric_class("kid") is KID and KID.optional


def test_kid_through_the_command_line(tmp_path, inception_torchscript) -> None:
    """``--metric kid`` adds ``kid``/``kid_std`` to a reconstruction result and says how it was computed; without
    it the result has no such key (the protocol's outputs do not change)."""
    common = ["eval", "reconstruction", "--tokenizer", "restok-tiny-mnist", "--data", "embedded:mnist-test"]
    common += ["--num-images", "12", "--batch-size", "6", "--inception-weights", inception_torchscript, "--no-progress"]
    with_kid = run_cli(*common, "--metric", "kid", "--out", str(tmp_path / "kid.json"))
    assert with_kid.returncode == 0, with_kid.stderr
    result = json.loads((tmp_path / "kid.json").read_text())
    assert result["kid"] is not None and result["kid_std"] < 1e-12  # 12 < 1000: every subset is every image
    assert "torch-fidelity" in result["settings"]["kid"]
    plain = run_cli(*common, "--out", str(tmp_path / "plain.json"))
    assert plain.returncode == 0 and "kid" not in json.loads((tmp_path / "plain.json").read_text())
    bad = run_cli(*common, "--metric", "nope", "--out", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "argument --metric" in bad.stderr
