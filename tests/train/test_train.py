"""Training: overfitting, exact resume (both trainers, GAN + alignment on), signals, NaN stop, crash during
checkpoint save, 2 processes == 1 process, config handling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from restok import HARGenerator, ResTok
from restok.data import open_image_source
from restok.runtime.processes import Processes
from restok.train import TrainingError, load_train_config, train_generator, train_tokenizer
from restok.train.checkpoints import CheckpointDir
from restok.train.codes import extract_codes
from restok.train.ema import EMA
from restok.train.optim import warmup_cosine

from ..helpers import launch_ranks, run_cli, write_image_folder

QUIET = Processes(progress=False)

ROOT = Path(__file__).resolve().parents[2]
FAST_TOK = ["batch_size=4", "log_every=1", "save_every=2", "image_every=3", "trackers=[]"]
FAST_GEN = ["batch_size=4", "log_every=1", "save_every=2", "image_every=100", "trackers=[]"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "model.safetensors"))


def _identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("data") / "images", classes=2, per_class=4)


@pytest.fixture(scope="module")
def codes(tmp_path_factory, images) -> Path:
    torch.manual_seed(0)
    tok = ResTok.from_preset("restok-tiny").eval()
    out = tmp_path_factory.mktemp("codes") / "codes"
    extract_codes(tok, open_image_source(images), out, crop="center", processes=QUIET)
    return out


def test_generator_grids_use_the_tokenizer_the_codes_name(images, tmp_path) -> None:
    torch.manual_seed(0)
    ResTok.from_preset("restok-tiny").save_pretrained(str(tmp_path / "tok"))
    tok = ResTok.from_pretrained(str(tmp_path / "tok")).eval()
    extract_codes(tok, open_image_source(images), tmp_path / "codes", crop="center-only", processes=QUIET)
    cfg = load_train_config("har-tiny", "generator", [*FAST_GEN, "image_every=2"])
    train_generator(cfg, str(tmp_path / "codes"), tmp_path / "run", max_steps=2, progress=False)
    assert (tmp_path / "run" / "images" / "step-00000002.png").stat().st_size > 100


def test_schedule_and_ema_rules() -> None:
    assert warmup_cosine(0, 10, 100, 1e-4, 1e-5) == 0.0
    assert warmup_cosine(5, 10, 100, 1e-4, 1e-5) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 100, 1e-4, 1e-5) == pytest.approx(1.0)
    assert warmup_cosine(100, 10, 100, 1e-4, 1e-5) == pytest.approx(0.1)
    m = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(m, 0.9999)
    with torch.no_grad():
        m.weight.fill_(2.0)
    ema.update(m)  # first update copies
    assert ema.shadow["weight"].item() == 2.0
    with torch.no_grad():
        m.weight.fill_(13.0)
    ema.update(m)  # k = 1: decay 2/11
    assert ema.shadow["weight"].item() == pytest.approx(2 * 2 / 11 + 13 * 9 / 11)


@pytest.mark.slow
def test_tokenizer_overfits_a_handful_of_images(images, tmp_path) -> None:
    cfg = load_train_config(
        "restok-tiny",
        "tokenizer",
        [
            "batch_size=4",
            "log_every=1",
            "save_every=1000",
            "image_every=1000",
            "trackers=[]",
            "loss.perceptual_weight=0",
            "loss.discriminator_weight=0",
            "loss.alignment_weight=0",
            "optimizer.warmup_steps=0",
            "optimizer.lr=2e-3",
            "min_crop=1.0",
            "flip=false",
        ],
    )
    train_tokenizer(cfg, str(images), tmp_path / "run", max_steps=24, progress=False)
    rec = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first, last = np.mean([r["mse"] for r in rec[:3]]), np.mean([r["mse"] for r in rec[-3:]])
    assert last < first / 3, (first, last)  # measured (2026-11-28): 0.33 -> 0.073
    tok = ResTok.from_pretrained(str(tmp_path / "run" / "final"))
    assert tok.config.encoder_feature_dim == 0


def test_generator_overfits_its_codes(codes, tmp_path) -> None:
    cfg = load_train_config(
        "har-tiny", "generator", [*FAST_GEN, "optimizer.warmup_steps=0", "optimizer.lr=3e-3", "save_every=1000"]
    )
    train_generator(cfg, str(codes), tmp_path / "run", max_steps=40, progress=False)
    rec = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rec[0]["loss"] == pytest.approx(np.log(1024), abs=0.05)  # zero-initialised head: ln V
    assert rec[-1]["loss"] < rec[0]["loss"] / 2, (
        rec[0]["loss"],
        rec[-1]["loss"],
    )  # measured (2026-11-28): 6.93 -> 3.16
    gen = HARGenerator.from_pretrained(str(tmp_path / "run" / "final"))
    assert gen.config.num_classes == 2 and gen.config.vocab_size == 1024 and gen.config.num_tokens == 32


@pytest.mark.slow
def test_tokenizer_exact_resume_with_gan_and_alignment(images, tmp_path) -> None:
    cfg = lambda: load_train_config("restok-tiny", "tokenizer", FAST_TOK)  # noqa: E731 - GAN from step 2, alignment on
    train_tokenizer(cfg(), str(images), tmp_path / "full", max_steps=6, progress=False)
    r = train_tokenizer(cfg(), str(images), tmp_path / "split", max_steps=6, stop_at=3, progress=False)
    assert r.status == "stopped" and r.step == 3 and not (tmp_path / "split" / "final").exists()
    r = train_tokenizer(cfg(), str(images), tmp_path / "split", max_steps=6, resume=True, progress=False)
    assert r.status == "finished"
    assert _identical(_weights(tmp_path / "full"), _weights(tmp_path / "split"))
    rec = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert {
        "gan_g",
        "d_hinge",
        "lecam",
        "align_enc",
        "align_dec",
        "lpips",
        "codebook_usage",
        "codebook_entropy",
    } <= rec[-1].keys()
    assert (tmp_path / "full" / "images" / "step-00000003.png").exists()
    assert (tmp_path / "full" / "config.yaml").exists()


def test_generator_exact_resume_after_sigterm(codes, tmp_path, monkeypatch) -> None:
    cfg = lambda: load_train_config("har-tiny", "generator", FAST_GEN)  # noqa: E731 - dropout on: RNG must be replayed
    train_generator(cfg(), str(codes), tmp_path / "full", max_steps=6, progress=False)

    from restok.train.generator import GeneratorTask

    original = GeneratorTask.train_step

    def step_then_signal(self, batch, step):  # type: ignore[no-untyped-def]
        out = original(self, batch, step)
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(GeneratorTask, "train_step", step_then_signal)
    r = train_generator(cfg(), str(codes), tmp_path / "split", max_steps=6, progress=False)
    assert r.status == "interrupted" and r.step == 3 and r.signal == signal.SIGTERM
    assert CheckpointDir(tmp_path / "split", 2).newest()[0] == 3
    monkeypatch.setattr(GeneratorTask, "train_step", original)
    train_generator(cfg(), str(codes), tmp_path / "split", max_steps=6, resume=True, progress=False)
    assert _identical(_weights(tmp_path / "full"), _weights(tmp_path / "split"))


def test_nan_loss_stops_with_message_and_keeps_checkpoint(codes, tmp_path, monkeypatch) -> None:
    calls = {"n": 0}
    original = HARGenerator.forward

    def poisoned(self, *a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        out = original(self, *a, **k)
        return out * float("nan") if calls["n"] == 3 else out

    monkeypatch.setattr(HARGenerator, "forward", poisoned)
    cfg = load_train_config("har-tiny", "generator", FAST_GEN)
    with pytest.raises(TrainingError, match="not finite at step 3"):
        train_generator(cfg, str(codes), tmp_path / "run", max_steps=6, progress=False)
    step, folder = CheckpointDir(tmp_path / "run", 2).newest()
    assert step == 2
    tensors, state = CheckpointDir.load(folder)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in tensors["model"].values())


KILL_DURING_SAVE = r"""
import os, signal, sys, torch
import safetensors.torch as st
from pathlib import Path
from restok.train.checkpoints import CheckpointDir
ck = CheckpointDir(Path(sys.argv[1]), keep=2)
ck.save(1, {"model": {"w": torch.ones(3)}}, {"step": 1})
real = st.save_file
def dying(tensors, path, *a, **k):
    Path(path).write_bytes(b"partial")  # half a file, then the process dies
    os.kill(os.getpid(), signal.SIGKILL)
import restok.train.checkpoints as eng
eng.save_file = dying
ck.save(2, {"model": {"w": torch.zeros(3)}}, {"step": 2})
"""


@pytest.mark.slow
def test_process_killed_while_saving_leaves_previous_checkpoint(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(tmp_path)], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    ck = CheckpointDir(tmp_path, keep=2)
    assert [s for s, _ in ck.complete()] == [1]
    tensors, state = CheckpointDir.load(ck.newest()[1])
    assert state["step"] == 1 and torch.equal(tensors["model"]["w"], torch.ones(3))
    ck.save(3, {"model": {"w": torch.full((3,), 3.0)}}, {"step": 3})  # the next save cleans the debris
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


NO_DROPOUT = "model_overrides={token_dropout_p: 0.0, resid_dropout_p: 0.0, ffn_dropout_p: 0.0}"


@pytest.mark.slow
def test_two_processes_match_one(codes, tmp_path) -> None:
    """torchrun with 2 CPU processes (gloo) and the same global batch gives the 1-process weights."""
    pytest.importorskip("accelerate")
    args = [
        "train",
        "generator",
        "--config",
        "har-tiny",
        "--codes",
        str(codes),
        "--max-steps",
        "4",
        "--no-progress",
        "--device",
        "cpu",
        "batch_size=4",
        "trackers=[]",
        NO_DROPOUT,
    ]
    one = run_cli(*args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    two = launch_ranks([*args, "--out", str(tmp_path / "two")], 29517)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def _torchrun(args: list[str], port: int) -> subprocess.CompletedProcess:
    return launch_ranks(args, port)


@pytest.mark.slow
def test_fsdp_generator_matches_one_process_and_resumes_exactly(codes, tmp_path) -> None:
    """distributed=fsdp (FSDP2 shards, 2 CPU processes): same weights as 1 process; stop + resume is bitwise exact."""
    pytest.importorskip("accelerate")
    base = [
        "train",
        "generator",
        "--config",
        "har-tiny",
        "--codes",
        str(codes),
        "--max-steps",
        "4",
        "--no-progress",
        "--device",
        "cpu",
        "batch_size=4",
        "grad_accum=2",
        "save_every=2",
        "image_every=2",
        "trackers=[]",
        NO_DROPOUT,
    ]
    one = run_cli(*base, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    full = _torchrun([*base, "distributed=fsdp", "--out", str(tmp_path / "fsdp")], 29521)
    assert full.returncode == 0, full.stderr[-3000:]
    first = _torchrun([*base, "distributed=fsdp", "--stop-at", "2", "--out", str(tmp_path / "res")], 29522)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (tmp_path / "res" / "final").exists()
    second = _torchrun([*base, "distributed=fsdp", "--resume", "--out", str(tmp_path / "res")], 29523)
    assert second.returncode == 0, second.stderr[-3000:]
    a, f, r = _weights(tmp_path / "one"), _weights(tmp_path / "fsdp"), _weights(tmp_path / "res")
    assert a.keys() == f.keys() == r.keys()
    assert max((a[k] - f[k]).abs().max().item() for k in a) < 1e-5
    assert _identical(f, r)
    # the checkpoint holds whole tensors (not shards) and the optimizer layout it was written with
    tensors, state = CheckpointDir.load(tmp_path / "fsdp" / "checkpoints" / "step-00000004")
    one_t, _ = CheckpointDir.load(tmp_path / "one" / "checkpoints" / "step-00000004")
    assert {k: v.shape for k, v in tensors["model"].items()} == {k: v.shape for k, v in one_t["model"].items()}
    assert state["optimizer_layout"] == "fsdp-full"
    # a DDP run cannot resume an FSDP checkpoint silently
    shutil.rmtree(tmp_path / "fsdp" / "final")
    ddp = run_cli(*base, "--max-steps", "4", "--resume", "--out", str(tmp_path / "fsdp"))
    assert ddp.returncode != 0 and "different config" in ddp.stderr


@pytest.mark.slow
def test_tokenizer_two_processes_match_one_fsdp_and_ddp_with_dead_code_restarts(image_folder, tmp_path) -> None:
    """The tokenizer with GAN, alignment and dead-code restarts on: 2 processes (FSDP2 shards, and DDP) give the
    1-process weights -- the same codes restarted to the same encoder outputs -- and the reconstruction grids
    (built from gathered EMA weights) are written."""
    from restok.train.codebook import WEIGHT

    pytest.importorskip("accelerate")
    base = [
        "train",
        "tokenizer",
        "--config",
        "restok-tiny",
        "--data",
        str(image_folder),
        "--max-steps",
        "3",
        "--no-progress",
        "--device",
        "cpu",
        "batch_size=4",
        "save_every=3",
        "image_every=2",
        "trackers=[]",
        "loss.discriminator_start=1",
        "restart_dead_codes=2",
        "log_every=1",
    ]
    one = run_cli(*base, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    two = _torchrun([*base, "distributed=fsdp", "--out", str(tmp_path / "two")], 29524)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "model sharded over 2 processes" in two.stderr
    ddp = _torchrun([*base, "--out", str(tmp_path / "ddp")], 29525)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = _weights(tmp_path / "one")

    def restarts(run):
        return [json.loads(line)["codebook_restarts"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert sum(restarts(tmp_path / "one")) > 0
    for run in ("two", "ddp"):
        b = _weights(tmp_path / run)
        assert a.keys() == b.keys()
        assert max((a[k] - b[k]).abs().max().item() for k in a if k != WEIGHT) < 1e-4, run
        # restarted codes are encoder outputs computed at another per-process batch size (float rounding), then
        # moved by Adam, whose normalised step does not shrink such differences: measured 2.5e-4 on unit vectors
        assert (a[WEIGHT] - b[WEIGHT]).abs().max().item() < 1e-3, run
        assert restarts(tmp_path / run) == restarts(tmp_path / "one"), run
    assert (tmp_path / "two" / "images" / "step-00000002.png").stat().st_size > 100


@pytest.mark.slow
def test_bf16_and_compiled_generator_training(codes, tmp_path, monkeypatch) -> None:
    """mixed_precision=bf16 (CPU autocast) and compile=true train, export and stay close to the fp32 eager run. The
    compiled run traces forward and backward through AOTAutograd (``aot_eager``): Inductor's kernels are checked
    against eager in tests/sampling/test_compiled.py, and would cost minutes here on a cold cache."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, **{**kw, "backend": "aot_eager"}))
    fp32 = load_train_config("har-tiny", "generator", [*FAST_GEN, NO_DROPOUT])
    train_generator(fp32, str(codes), tmp_path / "fp32", max_steps=3, progress=False, device="cpu")
    bf16 = load_train_config("har-tiny", "generator", [*FAST_GEN, NO_DROPOUT, "mixed_precision=bf16"])
    train_generator(bf16, str(codes), tmp_path / "bf16", max_steps=3, progress=False, device="cpu")
    comp = load_train_config("har-tiny", "generator", [*FAST_GEN, NO_DROPOUT, "compile=true"])
    train_generator(comp, str(codes), tmp_path / "comp", max_steps=3, progress=False, device="cpu")
    a, b, c = _weights(tmp_path / "fp32"), _weights(tmp_path / "bf16"), _weights(tmp_path / "comp")
    assert a.keys() == b.keys() == c.keys()
    assert max((a[k] - c[k]).abs().max().item() for k in a) < 1e-4  # compiled: same maths
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert 0 < diff < 5e-2  # bf16 really ran, and stayed close
    logs = [json.loads(line) for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in logs if "loss" in r)


def test_fp16_on_cpu_warns_that_it_trains_in_fp32(codes, tmp_path, caplog) -> None:
    cfg = load_train_config("har-tiny", "generator", [*FAST_GEN, "mixed_precision=fp16"])
    with caplog.at_level("WARNING", logger="restok.train"):
        train_generator(cfg, str(codes), tmp_path / "run", max_steps=1, progress=False, device="cpu")
    assert any("fp16 needs a GPU" in r.message for r in caplog.records)


def test_run_folder_and_config_guards(codes, tmp_path) -> None:
    cfg = load_train_config("har-tiny", "generator", FAST_GEN)
    train_generator(cfg, str(codes), tmp_path / "run", max_steps=2, progress=False)
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        train_generator(
            load_train_config("har-tiny", "generator", FAST_GEN),
            str(codes),
            tmp_path / "run",
            max_steps=2,
            progress=False,
        )
    other = load_train_config("har-tiny", "generator", [*FAST_GEN, "optimizer.lr=0.5"])
    with pytest.raises(TrainingError, match="different config"):
        train_generator(other, str(codes), tmp_path / "run", max_steps=2, resume=True, progress=False)
    with pytest.raises(TrainingError, match="--max-steps"):
        train_generator(
            load_train_config("har-tiny", "generator", FAST_GEN),
            str(codes),
            tmp_path / "run",
            max_steps=9,
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="unknown training setting"):
        load_train_config("har-tiny", "generator", ["learning_rate=1"])
    with pytest.raises(ValueError, match="not a tokenizer config"):
        load_train_config("har-tiny", "tokenizer")
    with pytest.raises(ValueError, match="neither a recipe"):
        load_train_config("nope.yaml", "tokenizer")


def test_yaml_config_with_base_and_overrides(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("base: restok-tiny\nbatch_size: 16\noptimizer:\n  lr: 0.002\nloss:\n  discriminator_start: 7\n")
    cfg = load_train_config(str(p), "tokenizer", ["optimizer.betas=[0.8, 0.9]"])
    assert cfg.batch_size == 16 and cfg.optimizer.lr == 0.002 and cfg.optimizer.betas == (0.8, 0.9)
    assert cfg.loss.discriminator_start == 7 and cfg.loss.perceptual_network == "vgg16-tiny"
    paper = load_train_config("restok-l-128", "tokenizer")
    assert paper.batch_size == 256 and paper.loss.discriminator_start == 20_000 and paper.optimizer.grad_clip == 10.0
    assert paper.loss.alignment_teacher == "dinov3-vitl16" and paper.loss.alignment_margin == 0.25
    har = load_train_config("har-l", "generator")
    assert har.optimizer.weight_decay == 0.05 and har.mixed_precision == "bf16" and har.max_steps == 1_500_000


def test_yaml_base_chain_of_files(tmp_path) -> None:
    (tmp_path / "a.yaml").write_text(
        "base: restok-tiny\nbatch_size: 16\nmodel_overrides: {width: 96, codebook_size: 512}\n"
    )
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.yaml").write_text("base: ../a.yaml\nmodel_overrides: {hierarchy_stages: 1}\n")
    cfg = load_train_config(str(sub / "b.yaml"), "tokenizer", ["max_steps=9"])
    assert cfg.batch_size == 16 and cfg.max_steps == 9 and cfg.model == "restok-tiny"
    assert cfg.model_overrides == {"width": 96, "codebook_size": 512, "hierarchy_stages": 1}  # nested merge
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="loops back"):
        load_train_config(str(tmp_path / "loop.yaml"), "tokenizer")
    (tmp_path / "bad.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ValueError, match="neither a recipe"):
        load_train_config(str(tmp_path / "bad.yaml"), "tokenizer")
    for name in ("mnist-tokenizer", "mnist-tokenizer-titok"):  # the shipped configs resolve
        load_train_config(str(ROOT / "configs" / f"{name}.yaml"), "tokenizer")
    assert load_train_config(str(ROOT / "configs" / "mnist-generator-ar.yaml"), "generator").model_overrides == {
        "ar_tokens": 32
    }


def test_weight_decay_groups_follow_official_exclusions() -> None:
    from restok.train.optim import param_groups

    model = ResTok.from_preset("restok-tiny")
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model, 1e-4)
    dn = {names[id(p)] for p in decay["params"]}
    nn_ = {names[id(p)] for p in no_decay["params"]}
    assert "encoder.blocks.0.attn.qkv.weight" in dn and "pixel_encoder.conv_in.weight" in dn
    assert "encoder.patch_embed.weight" in nn_ and "quantize.embedding.weight" in nn_
    assert "decoder.decoder_embed.0.weight" in nn_ and "encoder.level_embedding.0" in nn_


def test_fused_adamw_is_the_default_and_matches_the_reference_loop() -> None:
    from restok.train.config import OptimConfig
    from restok.train.optim import build_optimizer

    def run(fused: bool) -> tuple[torch.optim.Optimizer, torch.Tensor]:
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(32, 16)), torch.nn.Parameter(torch.randn(16))]
        opt = build_optimizer(
            [{"params": params[:1], "weight_decay": 0.05}, {"params": params[1:], "weight_decay": 0.0}],
            OptimConfig(lr=1e-2, fused=fused),
        )
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        return opt, torch.cat([p.detach().flatten() for p in params])

    fused, a = run(True)
    ref, b = run(False)
    assert fused.param_groups[0]["fused"] is True and ref.param_groups[0]["foreach"] is False
    torch.manual_seed(0)
    start = torch.cat([torch.randn(32, 16).flatten(), torch.randn(16)])
    assert (a - start).abs().min() > 0  # every entry moved
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert OptimConfig().fused is True


def test_activation_checkpointing_gives_same_gradients() -> None:
    from restok.models.layers.vit import Block
    from restok.train.distributed import enable_activation_checkpointing

    torch.manual_seed(0)
    a = ResTok.from_preset("restok-tiny").train()
    b = ResTok.from_preset("restok-tiny").train()
    b.load_state_dict(a.state_dict())
    assert enable_activation_checkpointing(b, (Block,)) == 8
    x = torch.rand(2, 3, 32, 32)
    for m in (a, b):
        out = m(x, kept_tokens=32)
        ((out.reconstruction - x) ** 2).mean().add(out.quantizer_loss).backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), n


def test_cli_train_stop_and_resume(images, tmp_path, capsys) -> None:
    from restok.cli import main

    base = [
        "train",
        "tokenizer",
        "--config",
        "restok-tiny",
        "--data",
        str(images),
        "--out",
        str(tmp_path / "run"),
        "--max-steps",
        "3",
        "--no-progress",
        *FAST_TOK,
        "loss.discriminator_weight=0",
    ]
    assert main([*base, "--stop-at", "2", "keep_checkpoints=3"]) == 0  # overrides on both sides of an option
    assert "stopped at step 2" in capsys.readouterr().out
    import yaml

    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["keep_checkpoints"] == 3
    assert main([*base, "--resume", "keep_checkpoints=3"]) == 0
    assert "finished at step 3" in capsys.readouterr().out
    assert ResTok.from_pretrained(str(tmp_path / "run" / "final")).num_tokens == 32
    assert (
        main(
            [
                "train",
                "tokenizer",
                "--config",
                "restok-tiny",
                "--data",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "run")


@pytest.mark.slow
def test_validation_kept_checkpoints_and_export(images, tmp_path, inception_torchscript) -> None:
    """eval_every logs the protocol's numbers for the EMA weights; a keep_steps checkpoint survives pruning and
    exports to the same model the run's final/ holds at that step."""
    from restok.data.images import load_image
    from restok.eval import reconstruction_batch, summarize_reconstruction
    from restok.eval.inception import load_inception
    from restok.train.export import export_checkpoint

    with pytest.raises(TrainingError, match="eval-data"):
        train_tokenizer(
            load_train_config("restok-tiny", "tokenizer", [*FAST_TOK, "eval_every=2"]), str(images), tmp_path / "no"
        )
    paper = load_train_config("restok-l-128", "tokenizer")
    assert paper.keep_steps == (750_000,) and paper.eval_every == 50_000 and paper.tf32
    over = [
        *FAST_TOK,
        "eval_every=2",
        "eval_images=5",
        f"eval_data={images}",
        f"eval_inception={inception_torchscript}",
        "keep_steps=[2]",
        "keep_checkpoints=1",
        "loss.discriminator_weight=0",
        "loss.alignment_weight=0",
    ]
    cfg = load_train_config("restok-tiny", "tokenizer", over)
    run = tmp_path / "run"
    train_tokenizer(cfg, str(images), run, max_steps=6, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/psnr" in r]
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert {"eval/psnr", "eval/ssim", "eval/codebook_usage", "eval/codebook_entropy", "eval/rfid"} <= set(evals[-1])
    # the last validation equals the protocol run on final/ (the EMA weights of step 6), on the first 5 images
    final = ResTok.from_pretrained(str(run / "final"))
    files = [r.name for r in open_image_source(images).records[:5]]
    x = torch.stack([load_image(f, 32) for f in files])
    want = summarize_reconstruction(
        reconstruction_batch(final, x, 32, load_inception(inception_torchscript)), final.codebook_size
    )
    for k in ("psnr", "ssim", "codebook_usage", "codebook_entropy", "rfid"):
        assert evals[-1][f"eval/{k}"] == pytest.approx(want[k], rel=1e-6, abs=1e-9), k
    steps = [s for s, _ in CheckpointDir(run, 1).complete()]
    assert steps == [2, 6]  # 4 was pruned, 2 is kept
    card = (run / "final" / "README.md").read_text()
    assert "How it was trained" in card and '"eval_every": 2' in card
    exported = export_checkpoint(run, 6, tmp_path / "exp6")
    assert _identical(load_file(str(exported / "model.safetensors")), _weights(run))
    two = ResTok.from_pretrained(str(export_checkpoint(run, 2)))
    assert two.config == final.config and not torch.equal(two.encoder.ln_post.weight, final.encoder.ln_post.weight)
    with pytest.raises(TrainingError, match="no complete checkpoint of step 4"):
        export_checkpoint(run, 4)
    from restok.cli import main

    assert main(["export", str(run), "--step", "3"]) == 2
    assert main(["export", str(run), "--step", "2", "--out", str(tmp_path / "cli2")]) == 0
    assert (tmp_path / "cli2" / "config.json").is_file()


class _OneProcess:
    """The two collectives the restarter uses, for a single process."""

    device = torch.device("cpu")

    def reduce(self, t: torch.Tensor, op: str) -> torch.Tensor:
        return t

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        return t


def test_dead_code_restarter_restarts_only_codes_unused_for_n_steps() -> None:
    from restok.data import derive_seed
    from restok.train.codebook import WEIGHT, DeadCodeRestarter

    K, C = 6, 3
    weight = torch.nn.Parameter(torch.zeros(K, C))
    opt = torch.optim.AdamW([weight], lr=0.1)
    weight.grad = torch.ones(K, C)
    opt.step()  # Adam moments are now non-zero for every row
    before = weight.detach().clone()
    shadow = {WEIGHT: torch.full((K, C), 5.0)}
    r = DeadCodeRestarter(K, after=2, seed=7)
    latents = torch.arange(12.0).reshape(4, C)
    used = torch.tensor([1, 1, 0, 0, 0, 0])
    assert r.step(_OneProcess(), 0, used, latents, {WEIGHT: weight}, opt, shadow) == 0  # unused for 1 step: not yet
    used = torch.tensor([1, 0, 1, 0, 0, 0])
    n = r.step(_OneProcess(), 1, used, latents, {WEIGHT: weight}, opt, shadow)
    dead = torch.tensor([3, 4, 5])  # 0, 2 used now, 1 a step ago: only 3, 4, 5 are 2 steps unused
    assert n == 3 and r.total == 3
    pick = torch.randperm(4, generator=torch.Generator().manual_seed(derive_seed(7, "dead-codes", 2)))[:3]
    assert torch.equal(weight.data[dead], latents[pick]) and torch.equal(shadow[WEIGHT][dead], latents[pick])
    assert torch.equal(weight.data[:3], before[:3]) and torch.equal(shadow[WEIGHT][:3], torch.full((3, C), 5.0))
    state = opt.state[weight]
    assert state["exp_avg"][dead].abs().max() == 0 and state["exp_avg_sq"][dead].abs().max() == 0
    assert state["exp_avg"][:3].abs().min() > 0
    assert r.last_used.tolist() == [2, 1, 2, 2, 2, 2]  # restarted codes get a fresh 2 steps
    assert r.interval_stats() == {"codebook_restarts": 3.0, "codebook_restarts_total": 3.0}
    assert r.interval_stats()["codebook_restarts"] == 0.0
    # more dead codes than encoder outputs: drawn with replacement, still from the outputs
    r2 = DeadCodeRestarter(K, after=1, seed=7)
    assert r2.step(_OneProcess(), 0, torch.zeros(K, dtype=torch.long), latents[:2], {WEIGHT: weight}, opt, shadow) == K
    assert all(any(torch.equal(row, lat) for lat in latents[:2]) for row in weight.data)


@pytest.mark.slow
def test_dead_code_restarts_lift_usage_are_logged_and_resume_exactly(images, tmp_path) -> None:
    """restart_dead_codes on a collapsing setup: usage rises against the same run without it, restarts are logged,
    and stop + resume ends bitwise equal to an uninterrupted run (the last-use record is in the checkpoint)."""
    over = [*FAST_TOK, "loss.discriminator_start=100", "save_every=3"]
    cfg = lambda extra: load_train_config("restok-tiny", "tokenizer", [*over, *extra])  # noqa: E731
    train_tokenizer(cfg([]), str(images), tmp_path / "plain", max_steps=6, progress=False)
    train_tokenizer(cfg(["restart_dead_codes=2"]), str(images), tmp_path / "full", max_steps=6, progress=False)
    train_tokenizer(
        cfg(["restart_dead_codes=2"]), str(images), tmp_path / "split", max_steps=6, stop_at=3, progress=False
    )
    with pytest.raises(TrainingError, match="different config"):  # the remedy cannot be switched on a resume
        train_tokenizer(
            cfg(["restart_dead_codes=3"]), str(images), tmp_path / "split", max_steps=6, resume=True, progress=False
        )
    train_tokenizer(
        cfg(["restart_dead_codes=2"]), str(images), tmp_path / "split", max_steps=6, resume=True, progress=False
    )
    assert _identical(_weights(tmp_path / "full"), _weights(tmp_path / "split"))
    ema = lambda run: load_file(str(run / "checkpoints" / "step-00000006" / "ema.safetensors"))  # noqa: E731
    assert _identical(ema(tmp_path / "full"), ema(tmp_path / "split"))
    rec = lambda run: [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    full, plain = rec(tmp_path / "full"), rec(tmp_path / "plain")
    assert full[-1]["codebook_restarts_total"] == sum(r["codebook_restarts"] for r in full) > 0
    assert "codebook_restarts" not in plain[-1]
    assert full[-1]["codebook_usage"] > plain[-1]["codebook_usage"], (
        full[-1]["codebook_usage"],
        plain[-1]["codebook_usage"],
    )
    assert not _identical(_weights(tmp_path / "full"), _weights(tmp_path / "plain"))


def test_entropy_term_is_a_training_option_and_logged(images, tmp_path) -> None:
    cfg = load_train_config(
        "restok-tiny",
        "tokenizer",
        [*FAST_TOK, "loss.discriminator_start=100", "model_overrides={entropy_loss_ratio: 0.1}"],
    )
    train_tokenizer(cfg, str(images), tmp_path / "run", max_steps=2, progress=False)
    rec = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("entropy" in r and r["entropy"] != 0 for r in rec)
    with pytest.raises(ValueError, match="restart_dead_codes"):
        load_train_config("har-tiny", "generator", ["restart_dead_codes=5"])


def test_init_from_starts_a_run_from_trained_weights(images, codes, tmp_path) -> None:
    """``init_from`` (fine-tuning): the run starts from the source's weights (a step at learning rate 0 ends on them
    exactly, fresh alignment heads aside) and takes the source's architecture (a narrower source trains narrower); a
    generator source must read the code set's tokens, vocabulary and classes."""
    frozen = ["optimizer.warmup_steps=5", "save_every=1000"]  # warm-up: the one step runs at learning rate 0
    torch.manual_seed(123)
    ResTok.from_preset("restok-tiny").save_pretrained(str(tmp_path / "tok"))
    src = load_file(str(tmp_path / "tok" / "model.safetensors"))
    tok_cfg = lambda extra: load_train_config("restok-tiny", "tokenizer", [*FAST_TOK, *frozen, *extra])  # noqa: E731
    train_tokenizer(
        tok_cfg([f"init_from={tmp_path / 'tok'}"]), str(images), tmp_path / "ft", max_steps=1, progress=False
    )
    assert _identical(_weights(tmp_path / "ft"), src)
    train_tokenizer(tok_cfg([]), str(images), tmp_path / "fresh", max_steps=1, progress=False)
    assert not _identical(_weights(tmp_path / "fresh"), src)
    torch.manual_seed(0)
    ResTok.from_preset("restok-tiny", width=48).save_pretrained(str(tmp_path / "narrow"))
    train_tokenizer(
        tok_cfg([f"init_from={tmp_path / 'narrow'}"]), str(images), tmp_path / "narrow-ft", max_steps=1, progress=False
    )
    assert ResTok.from_pretrained(str(tmp_path / "narrow-ft" / "final")).config.width == 48
    assert _identical(_weights(tmp_path / "narrow-ft"), load_file(str(tmp_path / "narrow" / "model.safetensors")))
    with pytest.raises(TrainingError, match="cannot be loaded"):
        train_tokenizer(
            tok_cfg([f"init_from={tmp_path / 'nothing-here'}"]),
            str(images),
            tmp_path / "bad2",
            max_steps=1,
            progress=False,
        )
    # a generator: the code set fixes vocabulary, length and classes; the source must have the same
    gen_cfg = lambda extra: load_train_config("har-tiny", "generator", [*FAST_GEN, *frozen, *extra])  # noqa: E731
    torch.manual_seed(5)
    HARGenerator.from_preset("har-tiny", vocab_size=1024, num_tokens=32, num_classes=2, ar_tokens=4).save_pretrained(
        str(tmp_path / "gen")
    )
    train_generator(
        gen_cfg([f"init_from={tmp_path / 'gen'}"]), str(codes), tmp_path / "gft", max_steps=1, progress=False
    )
    assert _identical(_weights(tmp_path / "gft"), load_file(str(tmp_path / "gen" / "model.safetensors")))
    HARGenerator.from_preset("har-tiny", vocab_size=1024, num_tokens=32, num_classes=10, ar_tokens=4).save_pretrained(
        str(tmp_path / "gen10")
    )
    with pytest.raises(TrainingError, match="does not read these codes: num_classes 10 vs 2"):
        train_generator(
            gen_cfg([f"init_from={tmp_path / 'gen10'}"]), str(codes), tmp_path / "gbad", max_steps=1, progress=False
        )


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_resume_on_another_number_of_processes(codes, tmp_path, mode, caplog) -> None:
    """2 -> 1 and 1 -> 2 processes (FSDP, whose one-process half trains unsharded: gathered, then sharded again) and
    2 -> 1 (DDP: whole tensors both ways, the same code path in either direction): the resume says what carries
    over; the end state is the uninterrupted run's up to the reduction's rounding (equivalent, not bitwise)."""
    pytest.importorskip("accelerate")
    base = [
        "train",
        "generator",
        "--config",
        "har-tiny",
        "--codes",
        str(codes),
        "--max-steps",
        "4",
        "--no-progress",
        "--device",
        "cpu",
        "batch_size=4",
        "save_every=2",
        "image_every=100",
        "trackers=[]",
        NO_DROPOUT,
        f"distributed={'fsdp' if mode == 'fsdp' else 'ddp'}",
    ]
    port = 29541 if mode == "ddp" else 29551
    # the uninterrupted run: one process (2 processes give its weights up to the reduction's rounding, as
    # test_two_processes_match_one and test_fsdp_generator_matches_one_process_and_resumes_exactly check)
    whole = run_cli(*base, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    # 2 -> 1
    first = _torchrun([*base, "--stop-at", "2", "--out", str(tmp_path / "two-one")], port + 1)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli(*base, "--resume", "--out", str(tmp_path / "two-one"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "checkpointed on 2 process(es) on 1" in caplog.text and "not bitwise" in caplog.text
    runs = ["two-one"]
    if mode == "fsdp":  # 1 -> 2
        first = run_cli(*base, "--stop-at", "2", "--out", str(tmp_path / "one-two"))
        assert first.returncode == 0, first.stderr[-3000:]
        second = _torchrun([*base, "--resume", "--out", str(tmp_path / "one-two")], port + 2)
        assert second.returncode == 0, second.stderr[-3000:]
        assert "checkpointed on 1 process(es) on 2" in second.stderr
        runs.append("one-two")
    w = _weights(tmp_path / "whole")
    for run in runs:
        r = _weights(tmp_path / run)
        assert r.keys() == w.keys()
        assert max((w[k] - r[k]).abs().max().item() for k in w) < 1e-4, run
    if mode == "fsdp":
        return  # the refusal below does not depend on the mode
    # a global batch the new count cannot split is refused in one line
    third = _torchrun([*base, "--max-steps", "4", "batch_size=3", "--resume", "--out", str(tmp_path / "odd")], port + 3)
    assert third.returncode != 0 and "not divisible by 2 processes" in third.stderr


def test_optimizer_state_moves_between_position_and_name_layouts_exactly() -> None:
    """The two layouts a checkpoint's optimizer state comes in load into either kind of run with every tensor equal."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    from restok.train.optim import param_groups

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)
    for _ in range(2):
        model(torch.randn(5, 3)).square().sum().backward()
        opt.step()
        opt.zero_grad()
    by_position = opt.state_dict()
    by_name = get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))

    class Holder:  # the two members of a Task that _load_optimizer reads
        fsdp = True

    from restok.train.task import ModelTask

    for saved, layout in ((by_position, "torch"), (by_name, "fsdp-full")):
        twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
        twin.load_state_dict(model.state_dict())
        topt = torch.optim.AdamW(param_groups(twin, 0.05), lr=1e-3)
        h = Holder()
        h.raw, h.opt = twin, topt
        h._torch_optimizer = lambda topt=topt: topt
        ModelTask._load_optimizer(h, saved, layout)
        got = topt.state_dict()
        assert all(
            torch.equal(got["state"][i][k], by_position["state"][i][k])
            for i in by_position["state"]
            for k in ("exp_avg", "exp_avg_sq")
        )


def test_codebook_usage_per_level_and_the_collapse_warning(caplog) -> None:
    """Each latent level's usage and entropy are logged; a level whose ids use under 5% of the codes they could is
    named once in a warning (fine-tuning on one's own images is where this shows first)."""
    from restok.core import hierarchy as Hy
    from restok.train.tokenizer import TokenizerTask

    task = TokenizerTask.__new__(TokenizerTask)
    task.levels = Hy.latent_level_bounds(8)  # levels of 1, 1, 2, 4 tokens
    task.level_counts = torch.zeros(len(task.levels), 64, dtype=torch.long)
    task.collapse_warned = set()
    task.level_counts[0, 5] = 400  # level 0: 400 ids, one code -> collapsed
    task.level_counts[3, :64] = 25  # level 3: every code -> healthy
    with caplog.at_level("WARNING", logger="restok.train"):
        stats = task._level_stats()
        task.level_counts[0, 5] = 400
        task._level_stats()
    assert stats["codebook_usage_level0"] == 1 / 64 and stats["codebook_usage_level3"] == 1.0
    assert abs(stats["codebook_entropy_level3"] - 6.0) < 1e-6 and "codebook_usage_level1" not in stats
    warnings = [r.getMessage() for r in caplog.records if "collapse" in r.getMessage()]
    assert len(warnings) == 1 and "latent level 0" in warnings[0] and "restart_dead_codes" in warnings[0]
