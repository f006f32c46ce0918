"""benchmarks/replication/replicate.py's orchestration: which models Table 2 trains, with which overrides, in which
order."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "replication" / "replicate.py"


@pytest.fixture(scope="module")
def replicate():
    """The replication script, imported by path (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("replicate_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def _recorded(replicate, monkeypatch, tmp_path, **kw) -> list[list[str]]:
    """The restok commands ``cmd_train`` would run into an empty runs folder (none is executed)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(replicate, "_restok", lambda *args: calls.append(list(args)))
    replicate.cmd_train(tmp_path / "runs", **kw)
    return calls


def _option(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_table2_budget_trains_every_row_per_seed_at_the_same_budget(replicate, monkeypatch, tmp_path):
    calls = _recorded(replicate, monkeypatch, tmp_path, seeds=[0, 1], budget=(1000, 750))
    trains = [c for c in calls if c[0] == "train"]
    rows = [row for _, row, _ in replicate.TABLE2_ROWS]
    # Seed-major order (a stopped run holds whole seeds), a tokenizer then its AR generator for every row.
    expected = [
        (kind, f"{prefix}-{row}-1000-750-s{seed}")
        for seed in (0, 1)
        for row in rows
        for kind, prefix in (("tokenizer", "tok"), ("generator", "ar"))
    ]
    assert [(c[1], Path(_option(c, "--out")).name) for c in trains] == expected
    for c in trains:
        seed = int(Path(_option(c, "--out")).name.rsplit("-s", 1)[1])
        steps = "1000" if c[1] == "tokenizer" else "750"
        assert f"max_steps={steps}" in c and c.count(f"max_steps={steps}") == 1
        assert (f"seed={seed}" in c) == (seed != 0)
        if c[1] == "generator":  # trained on its own tokenizer's codes
            assert Path(_option(c, "--codes")).name == Path(_option(c, "--out")).name.replace("ar-", "codes-", 1)
    # The same row config (and its dead-code restarts) for every seed; the embedded models are not retrained.
    tok_configs = {
        Path(_option(c, "--out")).name.split("-")[1]: _option(c, "--config") for c in trains if c[1] == "tokenizer"
    }
    assert tok_configs == {row: config for _, row, config in replicate.TABLE2_ROWS}
    assert not any(Path(_option(c, "--out")).name in replicate.MODELS for c in trains)
    extracts = [c for c in calls if c[0] == "extract-codes"]
    assert len(extracts) == 6 and all(_option(c, "--crop") == "center-only" for c in extracts)


def test_table2_at_the_configs_budget_shares_seed_0_with_the_embedded_models(replicate, monkeypatch, tmp_path):
    calls = _recorded(replicate, monkeypatch, tmp_path, seeds=[0, 2])
    outs = [Path(_option(c, "--out")).name for c in calls if c[0] == "train"]
    assert outs[: len(replicate.MODELS)] == list(replicate.MODELS)
    assert {"tok-hier", "tok-restok-s2", "ar-titok-s2", "ar-hier-s2"} <= set(outs)
    assert len(outs) == len(set(outs))
    assert not any("max_steps=" in a for c in calls for a in c)


def test_an_evaluation_of_a_retrained_model_is_not_reused(replicate, tmp_path):
    """The cached figures name the weights they measured (SHA-256): retraining a model under the same run name makes
    them stale, and they are removed with their chunks instead of being printed again."""
    import json

    runs = tmp_path / "runs"
    for name in ("tok-x", "gen-x"):
        (runs / name / "final").mkdir(parents=True)
        (runs / name / "final" / "model.safetensors").write_bytes(name.encode())
    sha = {n: replicate.file_sha256(runs / n / "final" / "model.safetensors") for n in ("tok-x", "gen-x")}
    out = runs / "eval" / "gen-gen-x-cfg1.json"
    work = out.with_name(out.name + ".work")
    work.mkdir(parents=True)
    (work / "chunk-000000.npz").write_bytes(b"old")
    out.write_text(
        json.dumps(
            {"gfid": 1.0, "settings": {"generator": {"sha256": sha["gen-x"]}, "tokenizer": {"sha256": sha["tok-x"]}}}
        )
    )
    roles = {"generator": "gen-x", "tokenizer": "tok-x"}
    assert replicate._cached(out, runs, roles)
    assert out.exists() and work.exists()
    (runs / "tok-x" / "final" / "model.safetensors").write_bytes(b"retrained")
    assert not replicate._cached(out, runs, roles)
    assert not out.exists() and not work.exists()
    assert not replicate._cached(out, runs, roles)  # nothing cached: evaluate


@pytest.mark.slow
def test_fig5_at_a_budget_compares_the_rows_trained_at_it(replicate, monkeypatch, tmp_path):
    """``fig5 --budget`` reads Table 2's seed-0 rows of that budget (an untrained row is left out), measures each by
    kept tokens, draws one held-out digit per class, and summarises the ResTok row's attention by level."""
    import json

    import torch

    from restok import ResTok
    from restok.data.embedded import MNISTDigits

    real = MNISTDigits("test")
    idx = torch.linspace(0, len(real) - 1, 1000).long()[torch.arange(0, 1000, 50)].tolist()  # 2 per class, sorted

    class Few:
        """20 held-out digits, still sorted by class as the real split is."""

        def __init__(self, split: str = "test", size: int = 32) -> None:
            assert split == "test"

        def __len__(self) -> int:
            return len(idx)

        def batch(self, indices):  # type: ignore[no-untyped-def]
            return real.batch(idx)

    monkeypatch.setattr(replicate, "MNISTDigits", Few)
    runs = tmp_path / "runs"
    torch.manual_seed(0)
    ResTok.from_preset(
        "restok-tiny",
        hierarchy_stages=1,
        latent_hierarchy=False,
        residual_image_tokens=False,
        residual_latent_tokens=False,
    ).save_pretrained(runs / "tok-titok-1-2-s0" / "final")
    ResTok.from_preset("restok-tiny").save_pretrained(runs / "tok-restok-1-2-s0" / "final")
    table = replicate.cmd_fig5(runs, (1, 2))
    assert "TiTok-like MSE" in table and "ResTok PSNR" in table and "hierarchies" not in table
    out = json.loads((runs / "eval" / "fig5-1-2.json").read_text())
    assert sorted(out["error"]) == ["tok-restok-1-2-s0", "tok-titok-1-2-s0"]
    assert all(sorted(map(int, v)) == [4, 8, 16, 32] for v in out["error"].values())
    assert len(out["attention"]["share_by_scale"]) == len(out["attention"]["level_sizes"])
    from PIL import Image

    for name in out["error"]:  # one digit per class: 10 columns x (originals + 4 prefix lengths), 2 px padding
        assert Image.open(runs / "eval" / f"fig5-strip-{name}.png").size == (10 * 34 + 2, 5 * 34 + 2)
    with pytest.raises(SystemExit, match="tok-restok-3-4-s0"):
        replicate.cmd_fig5(runs, (3, 4))


def test_a_model_trained_under_another_recipe_does_not_stand_in_for_the_current_one(replicate, monkeypatch, tmp_path):
    """``train`` skips a model whose ``final/`` exists only if its recorded settings are what the config (with the
    command's overrides) gives now; otherwise it stops and names the settings, and ``--tokenizer-set`` reproduces
    them."""
    import yaml

    from restok.train.config import load_train_config

    name, config = "tok-restok-1000-750-s0", "configs/mnist-tokenizer-table2.yaml"
    run = tmp_path / "runs" / name
    (run / "final").mkdir(parents=True)
    current = load_train_config(str(replicate.ROOT / config), "tokenizer", ["trackers=[]", "max_steps=1000"])
    older = round(current.min_crop - 0.05, 2)
    recorded = {**current.to_dict(), "min_crop": older, "data": "embedded:mnist-train"}
    (run / "config.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    with pytest.raises(SystemExit, match="min_crop"):
        _recorded(replicate, monkeypatch, tmp_path, only=[name], seeds=[0], budget=(1000, 750))
    assert (
        _recorded(
            replicate,
            monkeypatch,
            tmp_path,
            only=[name],
            seeds=[0],
            budget=(1000, 750),
            tokenizer_set=[f"min_crop={older}"],
        )
        == []
    )
    # A new run gets the overrides on its command line (and so in its own config.yaml and the cards' commands).
    calls = _recorded(
        replicate,
        monkeypatch,
        tmp_path,
        only=["tok-hier-1000-750-s0"],
        seeds=[0],
        budget=(1000, 750),
        tokenizer_set=["min_crop=1.0"],
    )
    assert [c[-1] for c in calls] == ["min_crop=1.0"]
    (run / "config.yaml").unlink()  # a run that recorded no settings is not trusted either
    with pytest.raises(SystemExit, match="config.yaml"):
        _recorded(replicate, monkeypatch, tmp_path, only=[name], seeds=[0], budget=(1000, 750))


def test_codes_of_a_retrained_tokenizer_are_not_reused(replicate, monkeypatch, tmp_path):
    """``train`` reuses a code set only if its ``meta.json`` names the tokenizer weights now in the run (SHA-256): codes
    of an older tokenizer would train (or stand in for) a stale generator."""
    import json

    import yaml

    from restok.hub import file_sha256
    from restok.train.config import load_train_config
    from restok.train.generator import code_set_identity

    runs, config = tmp_path / "runs", "configs/mnist-tokenizer-table2.yaml"
    tok = runs / "tok-restok-1000-750-s0"
    (tok / "final").mkdir(parents=True)
    (tok / "final" / "model.safetensors").write_bytes(b"retrained weights")
    cfg = load_train_config(str(replicate.ROOT / config), "tokenizer", ["trackers=[]", "max_steps=1000"])
    (tok / "config.yaml").write_text(yaml.safe_dump({**cfg.to_dict(), "data": "embedded:mnist-train"}, sort_keys=False))
    codes = runs / "codes-restok-1000-750-s0"
    codes.mkdir()
    (codes / "meta.json").write_text(json.dumps({"tokenizer": {"sha256": "0" * 64}}))
    only = dict(only=[tok.name, "ar-restok-1000-750-s0"], seeds=[0], budget=(1000, 750))
    with pytest.raises(SystemExit, match="codes-restok-1000-750-s0 was extracted from other weights"):
        _recorded(replicate, monkeypatch, tmp_path, **only)
    (codes / "meta.json").write_text(
        json.dumps({"tokenizer": {"sha256": file_sha256(tok / "final" / "model.safetensors")}})
    )
    calls = _recorded(replicate, monkeypatch, tmp_path, **only)
    assert [(c[0], c[1]) for c in calls] == [("train", "generator")]  # the codes are reused, the generator trained
    # A generator trained on an older extraction (its config.yaml's data line names the tokenizer) is not reused
    # either once the codes were re-extracted from the retrained tokenizer.
    gen = runs / "ar-restok-1000-750-s0"
    (gen / "final").mkdir(parents=True)
    gcfg = load_train_config(
        str(replicate.ROOT / "configs/mnist-generator-ar.yaml"), "generator", ["trackers=[]", "max_steps=750"]
    ).to_dict()

    def trained_on(sha: str) -> None:  # the record a generator run writes (restok.train.generator)
        data = code_set_identity(codes, {"num_samples": 4000, "num_crops": 1, "tokenizer": {"sha256": sha}})
        (gen / "config.yaml").write_text(yaml.safe_dump({**gcfg, "data": data}, sort_keys=False))

    trained_on("1" * 64)
    with pytest.raises(SystemExit, match="ar-restok-1000-750-s0 was trained on codes of other tokenizer weights"):
        _recorded(replicate, monkeypatch, tmp_path, **only)
    trained_on(file_sha256(tok / "final" / "model.safetensors"))
    assert _recorded(replicate, monkeypatch, tmp_path, **only) == []  # both reused
