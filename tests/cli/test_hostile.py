"""A careless or hostile user, class by class: each case ends in one clear line and a nonzero exit, or in a correct
result; no data is lost on a full disk, a kill or two concurrent jobs; resumes are refused under other settings."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from restok.train import TrainConfig, TrainingError, load_train_config, train_tokenizer

from ..helpers import Ran, run_cli, write_image_folder

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
FAST = [
    "batch_size=4",
    "log_every=1",
    "save_every=2",
    "image_every=100",
    "trackers=[]",
    "loss.discriminator_weight=0",
    "loss.alignment_weight=0",
    "loss.perceptual_weight=0",
]


def restok(*args: str, limit_bytes: int | None = None, timeout: int = 300) -> Ran | subprocess.CompletedProcess:
    """``restok ARGS`` in-process; with ``limit_bytes``, in a process of its own whose files cannot grow past that
    size (a disk that fills up)."""
    if limit_bytes is None:
        return run_cli(*args)

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the cap fail with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "restok", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        preexec_fn=cap if limit_bytes else None,
    )


def one_line_error(r: Ran | subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1, r.stderr
    for w in words:
        assert w in err[0], (w, err[0])


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("png")
    rng = np.random.default_rng(0)
    out = []
    for i in range(3):
        p = d / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


# ------------------------------------------------------------------------------------------- bad files and values
def test_broken_weight_files_are_one_line(tmp_path, tok_dir) -> None:
    for name, data in (
        ("zero", b""),
        ("garbage", b"\x00\x01 not safetensors" * 10),
        ("truncated", (tok_dir / "model.safetensors").read_bytes()[:4000]),
    ):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text((tok_dir / "config.json").read_text())
        (d / "model.safetensors").write_bytes(data)
        one_line_error(
            restok("reconstruct", "x.png", "--tokenizer", str(d), "--out", str(tmp_path / "o")), "model.safetensors"
        )
    # weights that cannot be right: integer tensors, NaN
    sd = load_file(str(tok_dir / "model.safetensors"))
    for name, change in (("int", lambda t: t.to(torch.int32)), ("nan", lambda t: t * float("nan"))):
        d = tmp_path / f"bad-{name}"
        d.mkdir()
        (d / "config.json").write_text((tok_dir / "config.json").read_text())
        save_file(
            {k: (change(v) if k == "encoder.ln_post.weight" else v) for k, v in sd.items()},
            str(d / "model.safetensors"),
        )
        one_line_error(
            restok("reconstruct", "x.png", "--tokenizer", str(d), "--out", str(tmp_path / "o")),
            "not floating point" if name == "int" else "NaN or Inf",
        )


def test_wrong_types_in_configs_are_refused(tmp_path, tok_dir) -> None:
    cfg = json.loads((tok_dir / "config.json").read_text())
    for key, value, words in (
        ("use_l2_norm", "no", "use_l2_norm must be true or false"),
        ("num_tokens", 32.5, "num_tokens must be an integer"),
    ):
        d = tmp_path / key
        d.mkdir()
        bad = json.loads(json.dumps(cfg))
        bad["config"][key] = value
        (d / "config.json").write_text(json.dumps(bad))
        (d / "model.safetensors").write_bytes((tok_dir / "model.safetensors").read_bytes())
        one_line_error(restok("reconstruct", "x.png", "--tokenizer", str(d), "--out", str(tmp_path / "o")), words)
    (tmp_path / "broken.json").write_text("{not json")
    d = tmp_path / "broken-config"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    (d / "model.safetensors").write_bytes(b"")
    one_line_error(restok("reconstruct", "x.png", "--tokenizer", str(d), "--out", str(tmp_path / "o")), "config.json")
    # training configs: YAML syntax, wrong types in the file and in key=value overrides
    (tmp_path / "bad.yaml").write_text("base: restok-tiny\nbatch_size: [1, 2\n")
    images = write_image_folder(tmp_path / "imgs")
    one_line_error(
        restok(
            "train",
            "tokenizer",
            "--config",
            str(tmp_path / "bad.yaml"),
            "--data",
            str(images),
            "--out",
            str(tmp_path / "r"),
        ),
        "bad.yaml",
    )
    (tmp_path / "float.yaml").write_text("base: restok-tiny\nmax_steps: 10.7\n")
    one_line_error(
        restok(
            "train",
            "tokenizer",
            "--config",
            str(tmp_path / "float.yaml"),
            "--data",
            str(images),
            "--out",
            str(tmp_path / "r"),
        ),
        "max_steps must be an integer",
    )
    one_line_error(
        restok(
            "train",
            "tokenizer",
            "--config",
            "restok-tiny",
            "--data",
            str(images),
            "--out",
            str(tmp_path / "r"),
            "flip=maybe",
        ),
        "flip must be true or false",
    )
    one_line_error(
        restok(
            "train",
            "tokenizer",
            "--config",
            "restok-tiny",
            "--data",
            str(images),
            "--out",
            str(tmp_path / "r"),
            "--max-steps",
            "0",
        ),
        "--max-steps",
    )
    assert not (tmp_path / "r" / "final").exists()


def test_codes_files_that_lie_are_refused(tmp_path, tok_dir) -> None:
    ok = dict(
        ids=np.zeros((2, 32), np.int32),
        files=np.array(["a.png", "b.png"]),
        tokenizer=np.array(str(tok_dir)),
        image_size=np.array(32),
    )
    cases = {
        "float": {**ok, "ids": np.full((2, 32), 3.7)},
        "rows": {**ok, "files": np.array(["a.png"])},
        "empty": None,
        "lengths": {**ok, "lengths": np.array([8.5, 32.0])},  # would be truncated to 8 if not refused
        "nul": {**ok, "files": np.array(["a.png", "b\x00.png"])},
    }
    for name, arrays in cases.items():
        p = tmp_path / f"{name}.npz"
        if arrays is None:
            p.write_bytes(b"")
        else:
            np.savez(p, **arrays)
        one_line_error(restok("detokenize", str(p), "--out", str(tmp_path / name)), str(p))
    assert not any((tmp_path / n).exists() for n in cases)


def test_extract_codes_refuses_bad_shard_sizes(tmp_path, tok_dir) -> None:
    images = write_image_folder(tmp_path / "imgs")
    for size in ("0", "-5"):
        one_line_error(
            restok(
                "extract-codes",
                "--tokenizer",
                str(tok_dir),
                "--data",
                str(images),
                "--out",
                str(tmp_path / f"c{size}"),
                "--shard-size",
                size,
                "--no-progress",
            ),
            "--shard-size",
        )


def test_exit_status_tells_failed_inputs_from_errors(tmp_path, tok_dir, pngs) -> None:
    (tmp_path / "a.txt").write_text("not an image")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 broken")
    r = restok(
        "reconstruct",
        str(pngs[0]),
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.jpg"),
        "--tokenizer",
        str(tok_dir),
        "--out",
        str(tmp_path / "o"),
    )
    assert r.returncode == 1 and "2 input(s) failed" in r.stdout and "a.txt" in r.stderr and "Traceback" not in r.stderr
    one_line_error(
        restok("reconstruct", str(pngs[0]), "--tokenizer", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    )


# ------------------------------------------------------------------------------------------- outputs
def test_outputs_never_collide_escape_or_lie(tmp_path, tok_dir, pngs) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "same.png").write_bytes(pngs[0].read_bytes())
    (b / "same.png").write_bytes(pngs[1].read_bytes())
    out = tmp_path / "rec"
    r = restok(
        "reconstruct",
        str(a / "same.png"),
        str(b / "same.png"),
        str(pngs[2]),
        "--tokenizer",
        str(tok_dir),
        "--tokens",
        "8",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    written = sorted(p.name for p in out.glob("*_k8.png"))
    assert written == ["a_same_k8.png", "b_same_k8.png", "img2_k8.png"], written
    assert not np.array_equal(
        np.asarray(Image.open(out / "a_same_k8.png")), np.asarray(Image.open(out / "b_same_k8.png"))
    )
    # the reported path is the real one
    r = restok("tokenize", str(pngs[0]), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "x.txt"))
    assert r.returncode == 0 and str(tmp_path / "x.txt") in r.stdout and (tmp_path / "x.txt").is_file()
    assert not (tmp_path / "x.txt.npz").exists()
    # a symlink planted in --out is replaced, not followed to overwrite what it points at
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out2 = tmp_path / "rec2"
    out2.mkdir()
    (out2 / "img0_k8.png").symlink_to(victim)
    r = restok("reconstruct", str(pngs[0]), "--tokenizer", str(tok_dir), "--tokens", "8", "--out", str(out2))
    assert r.returncode == 0 and victim.read_text() == "precious"
    assert not (out2 / "img0_k8.png").is_symlink() and Image.open(out2 / "img0_k8.png").size == (32, 32)


@pytest.mark.slow
def test_full_disk_keeps_the_previous_file(tmp_path, tok_dir, pngs) -> None:
    many = []
    for i in range(60):
        p = tmp_path / f"m{i:02d}.png"
        p.write_bytes(pngs[i % 3].read_bytes())
        many.append(str(p))
    codes = tmp_path / "codes.npz"
    assert restok("tokenize", str(pngs[0]), "--tokenizer", str(tok_dir), "--out", str(codes)).returncode == 0
    before = codes.read_bytes()
    r = restok("tokenize", *many, "--tokenizer", str(tok_dir), "--out", str(codes), limit_bytes=4096)
    one_line_error(r)
    assert codes.read_bytes() == before and np.load(codes)["ids"].shape == (1, 32)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".codes.npz")]  # no temporary left behind


@pytest.mark.slow
def test_saved_models_are_byte_identical_across_processes(tmp_path) -> None:
    code = (
        "import torch, sys; from restok import HARGenerator; torch.manual_seed(0); "
        "HARGenerator.from_preset('har-tiny').save_pretrained(sys.argv[1])"
    )
    digests = []
    for i in range(2):
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / f"m{i}")], check=True, env={**ENV, "PYTHONHASHSEED": str(i)}
        )
        digests.append(hashlib.sha256((tmp_path / f"m{i}" / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


# ------------------------------------------------------------------------------------------- resources
def test_small_inputs_cannot_take_large_resources(tmp_path, tok_dir) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("L", (10000, 10000)).save(bomb, optimize=True)
    assert bomb.stat().st_size < 200_000
    t = time.perf_counter()
    r = restok("reconstruct", str(bomb), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "10000 x 10000" in r.stderr and time.perf_counter() - t < 60
    from restok.data import DataError, open_image_source

    with pytest.raises(DataError, match="more than 100,000 shards"):
        open_image_source(str(tmp_path / "shard-{0000000..9999999}.tar"))
    import io
    import tarfile

    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tf:
        for key, label in (("a", "0"), ("b", "1"), ("c", "1000000")):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8)).save(buf, format="PNG")
            for ext, data in (("png", buf.getvalue()), ("cls", label.encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="go up to 1000000"):
        open_image_source(str(shard))


def test_offline_means_offline(monkeypatch) -> None:
    from restok.train.backbones import BackboneError, build_dino_backbone, build_lpips

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    called = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: called.append(a))
    with pytest.raises(BackboneError, match="loss.perceptual_vgg_weights"):
        build_lpips("vgg16")
    with pytest.raises(BackboneError, match="loss.discriminator_weights"):
        build_dino_backbone("dino-vits16")
    assert called == []


# ------------------------------------------------------------------------------------------- concurrency, kills, resume
def _hold_lock(folder: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from restok.runtime.locks import FolderLock; l = FolderLock(sys.argv[1], 'test holder'); "
        "print('held', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.mark.slow
def test_one_job_per_folder(tmp_path, tok_dir) -> None:
    images = write_image_folder(tmp_path / "imgs")
    for folder, cmd in (
        (
            tmp_path / "run",
            [
                "train",
                "tokenizer",
                "--config",
                "restok-tiny",
                "--data",
                str(images),
                "--out",
                str(tmp_path / "run"),
                "--max-steps",
                "2",
                "--no-progress",
                *FAST,
            ],
        ),
        (
            tmp_path / "codes",
            [
                "extract-codes",
                "--tokenizer",
                str(tok_dir),
                "--data",
                str(images),
                "--out",
                str(tmp_path / "codes"),
                "--no-progress",
            ],
        ),
    ):
        holder = _hold_lock(folder)
        try:
            one_line_error(restok(*cmd), "in use by a running restok job", "test holder")
        finally:
            holder.kill()
            holder.wait()
        r = restok(*cmd)  # the holder died: its lock does not block
        assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_damaged_newest_checkpoint_falls_back_and_resume_is_exact(tmp_path, caplog) -> None:
    images = write_image_folder(tmp_path / "imgs")
    cfg = lambda: load_train_config("restok-tiny", "tokenizer", FAST)  # noqa: E731
    train_tokenizer(cfg(), str(images), tmp_path / "full", max_steps=6, progress=False)
    for damage in ("truncate-ema", "empty-trainer"):
        run = tmp_path / damage
        train_tokenizer(cfg(), str(images), run, max_steps=6, stop_at=4, progress=False)
        newest = run / "checkpoints" / "step-00000004"
        if damage == "truncate-ema":
            data = (newest / "ema.safetensors").read_bytes()
            (newest / "ema.safetensors").write_bytes(data[: len(data) // 2])
        else:
            (newest / "trainer.pt").write_bytes(b"")
        with caplog.at_level("WARNING", logger="restok.train"):
            train_tokenizer(cfg(), str(images), run, max_steps=6, resume=True, progress=False)
        assert any("step-00000004 is damaged" in m for m in caplog.messages)
        a, b = (
            load_file(str(run / "final" / "model.safetensors")),
            load_file(str(tmp_path / "full" / "final" / "model.safetensors")),
        )
        assert a.keys() == b.keys() and all(
            torch.equal(a[k], b[k]) for k in a
        )  # resumed from step 2: still bitwise equal
        caplog.clear()


def test_resume_with_other_data_is_refused(tmp_path) -> None:
    images = write_image_folder(tmp_path / "imgs")
    other = write_image_folder(tmp_path / "other", per_class=5)
    cfg = lambda: load_train_config("restok-tiny", "tokenizer", FAST)  # noqa: E731
    train_tokenizer(cfg(), str(images), tmp_path / "run", max_steps=4, stop_at=2, progress=False)
    with pytest.raises(TrainingError, match="data"):
        train_tokenizer(cfg(), str(other), tmp_path / "run", max_steps=4, resume=True, progress=False)


@pytest.mark.slow
def test_kill_during_extraction_then_resume_gives_the_same_code_set(tmp_path, tok_dir) -> None:
    images = write_image_folder(tmp_path / "imgs", per_class=6)
    args = [
        "extract-codes",
        "--tokenizer",
        str(tok_dir),
        "--data",
        str(images),
        "--crop",
        "center",
        "--shard-size",
        "3",
        "--batch-size",
        "2",
        "--no-progress",
    ]
    assert restok(*args, "--out", str(tmp_path / "whole")).returncode == 0
    p = subprocess.Popen(
        [sys.executable, "-m", "restok", *args, "--out", str(tmp_path / "killed")],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "killed").glob("shard-*.codes.npy")):
        time.sleep(0.05)
    p.kill()
    p.wait()
    assert restok(*args, "--out", str(tmp_path / "killed")).returncode == 0
    for f in sorted((tmp_path / "whole").glob("shard-*.npy")):
        assert np.array_equal(np.load(f), np.load(tmp_path / "killed" / f.name)), f.name
    r = restok("check-codes", str(tmp_path / "killed"), "--tokenizer", str(tok_dir), "--data", str(images))
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------- the second trial's classes
@pytest.mark.slow
def test_links_planted_in_a_run_folder_are_refused_and_followed_nowhere(tmp_path, outside) -> None:
    images = write_image_folder(tmp_path / "imgs", per_class=2)
    for planted in (".restok.lock", "metrics.jsonl", "checkpoints"):
        run = tmp_path / f"run-{planted.strip('.')}"
        run.mkdir()
        (run / planted).symlink_to(
            outside if planted != "checkpoints" else outside.parent, target_is_directory=planted == "checkpoints"
        )
        r = restok(
            "train",
            "tokenizer",
            "--config",
            "restok-tiny",
            "--data",
            str(images),
            "--out",
            str(run),
            "--max-steps",
            "2",
            "--no-progress",
            *FAST,
        )
        one_line_error(r, planted, "symbolic link")
        assert outside.read_text() == "precious\n" and sorted(p.name for p in outside.parent.iterdir()) == [
            "precious.txt"
        ]


def test_a_link_planted_as_an_evaluation_lock_is_refused(tmp_path, tok_dir, outside, inception_torchscript) -> None:
    images = write_image_folder(tmp_path / "imgs", per_class=2)
    work = tmp_path / "res.json.work"
    work.mkdir()
    (work / ".restok.lock").symlink_to(outside)
    r = restok(
        "eval",
        "reconstruction",
        "--tokenizer",
        str(tok_dir),
        "--data",
        str(images),
        "--out",
        str(tmp_path / "res.json"),
        "--inception-weights",
        inception_torchscript,
        "--no-progress",
    )
    one_line_error(r, ".restok.lock", "symbolic link")
    assert outside.read_text() == "precious\n"


def test_restok_offline_alone_never_reaches_the_network(monkeypatch, tmp_path, pngs) -> None:
    import socket

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("RESTOK_OFFLINE", "1")
    reached = []

    def no_network(*a, **k):
        reached.append(a)
        raise OSError("network used")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    t = time.perf_counter()
    r = restok("tokenize", str(pngs[0]), "--tokenizer", "someorg/somemodel", "--out", str(tmp_path / "c.npz"))
    one_line_error(r, "someorg/somemodel", "not in the Hugging Face cache")
    assert reached == [] and time.perf_counter() - t < 10


@pytest.mark.slow
def test_limits_are_checked_before_the_work(tmp_path, tok_dir) -> None:
    # a thin strip of a few bytes would become 32 x 32,000,000 pixels after the resize
    strip = tmp_path / "strip.png"
    Image.new("L", (1_000_000, 1)).save(strip, optimize=True)
    assert strip.stat().st_size < 10_000
    t = time.perf_counter()
    r = restok("tokenize", str(strip), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "c.npz"))
    assert r.returncode == 2 and "aspect ratio is too extreme" in r.stderr and "strip.png" in r.stderr, r.stderr
    assert time.perf_counter() - t < 30
    # a FIFO among the inputs is skipped and named (a process of its own: a hang would be caught by the timeout)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    ok = tmp_path / "ok.png"
    Image.new("RGB", (40, 40)).save(ok)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "restok",
            "tokenize",
            str(fifo),
            str(ok),
            "--tokenizer",
            str(tok_dir),
            "--out",
            str(tmp_path / "d.npz"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert p.returncode == 1 and "fifo.png is a FIFO" in p.stderr, p.stderr
    # a YAML alias bomb, and model sizes beyond any machine, fail in one line before anything is built
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "base: restok-tiny\n"
        + "\n".join(
            ["x0: &x0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
            + [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]" for i in range(1, 9)]
        )
    )
    run = ["train", "tokenizer", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"]
    t = time.perf_counter()
    one_line_error(restok(*run, "--config", str(bomb)), "expands to more than")
    one_line_error(restok(*run, "--config", "restok-tiny", "model_overrides.depth=100000"), "depth", "1024")
    one_line_error(restok(*run, "--config", "restok-tiny", "model_overrides.width=1e6"), "width", "integer")
    assert time.perf_counter() - t < 30
    # a checkpoint whose config asks for more parameters than memory holds is refused before allocation
    huge = tmp_path / "huge"
    huge.mkdir()
    record = json.loads((tok_dir / "config.json").read_text())
    record["config"].update(width=65536, num_heads=1024, depth=64)
    (huge / "config.json").write_text(json.dumps(record))
    (huge / "model.safetensors").write_bytes((tok_dir / "model.safetensors").read_bytes())
    one_line_error(
        restok("tokenize", str(ok), "--tokenizer", str(huge), "--out", str(tmp_path / "e.npz")),
        "parameters",
        "more than",
    )
    # a search grid of a million points is refused before any model is loaded, naming the flag that allows it
    axes = [
        "--cfg-scale",
        *map(str, range(1, 101)),
        "--top-k",
        *map(str, range(100)),
        "--temperature",
        *(str(1 + i / 100) for i in range(100)),
    ]
    t = time.perf_counter()
    one_line_error(
        restok(
            "eval",
            "search",
            "--generator",
            "g",
            "--tokenizer",
            "t",
            "--reference",
            "r.npz",
            "--out",
            str(tmp_path / "s"),
            *axes,
        ),
        "1,000,000 points",
        "--max-points",
    )
    assert time.perf_counter() - t < 10


def test_nan_and_overflow_never_become_results(tmp_path, tok_dir, pngs) -> None:
    from restok.eval import EvaluationError, load_reference

    ref = tmp_path / "ref.npz"
    sigma = np.eye(4)
    sigma[1, 2] = np.nan
    np.savez(ref, mu=np.zeros(4), sigma=sigma, activations=np.ones((8, 4)))
    with pytest.raises(EvaluationError, match="'sigma' holds NaN"):
        load_reference(ref)
    # weights so large that the decoder overflows: one line, and no black PNG written
    sd = load_file(str(tok_dir / "model.safetensors"))
    loud = tmp_path / "loud"
    loud.mkdir()
    (loud / "config.json").write_text((tok_dir / "config.json").read_text())
    save_file(
        {k: v * 1e38 if k.startswith("decoder") and v.is_floating_point() else v for k, v in sd.items()},
        str(loud / "model.safetensors"),
    )
    r = restok("reconstruct", str(pngs[0]), "--tokenizer", str(loud), "--out", str(tmp_path / "rec"))
    one_line_error(r, "NaN or infinite")
    assert not list((tmp_path / "rec").glob("*.png")) if (tmp_path / "rec").exists() else True
    # a training config whose model is of the other kind
    with pytest.raises(ValueError, match="'har-tiny' is a generator preset"):
        TrainConfig(kind="tokenizer", model="har-tiny")


def test_labels_and_verification_check_content(tmp_path, tok_dir) -> None:
    import io
    import tarfile

    from restok.data import DataError, open_image_source

    for label in (b"-3", b"cat", b"1.5"):
        shard = tmp_path / f"s{label.decode()}.tar"
        with tarfile.open(shard, "w") as tf:
            for key, cls in (("a", b"0"), ("b", label)):
                buf = io.BytesIO()
                Image.new("RGB", (8, 8)).save(buf, format="PNG")
                for ext, data in (("png", buf.getvalue()), ("cls", cls)):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        with pytest.raises(
            DataError, match=rf"b\.cls: the class label '{label.decode()}' is not a non-negative integer"
        ):
            open_image_source(str(shard))
        one_line_error(
            restok(
                "extract-codes",
                "--tokenizer",
                str(tok_dir),
                "--data",
                str(shard),
                "--out",
                str(tmp_path / "c"),
                "--no-progress",
            ),
            "b.cls",
        )
    # check-codes re-encodes images of every shard: a change in the last shard is found
    images = write_image_folder(tmp_path / "imgs", per_class=3)
    out = tmp_path / "codes"
    assert (
        restok(
            "extract-codes",
            "--tokenizer",
            str(tok_dir),
            "--data",
            str(images),
            "--crop",
            "center",
            "--shard-size",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ).returncode
        == 0
    )
    for p in sorted((images / "class1").glob("*.png"))[1:]:  # images 4 and 5: the last shard
        Image.fromarray(255 - np.asarray(Image.open(p))).save(p)
    r = restok("check-codes", str(out), "--tokenizer", str(tok_dir), "--data", str(images), "--verify", "3")
    assert r.returncode == 2 and "error:" in r.stderr, (r.stdout, r.stderr)


def test_small_losses(tmp_path, tok_dir, pngs) -> None:
    # the same input twice: two outputs, as the count says
    r = restok(
        "reconstruct",
        str(pngs[0]),
        str(pngs[0]),
        "--tokenizer",
        str(tok_dir),
        "--tokens",
        "8",
        "--out",
        str(tmp_path / "o"),
    )
    assert r.returncode == 0 and "wrote 2 reconstruction(s)" in r.stdout
    assert len(list((tmp_path / "o").glob("*_compare.png"))) == 2
    # a checkpoint save on a full disk names the disk and the checkpoint; the earlier checkpoints stay
    from restok.train.checkpoints import CheckpointDir

    ckpts = CheckpointDir(tmp_path / "run", keep=2)
    ckpts.save(1, {"ema": {"w": torch.ones(2)}}, {"step": 1})

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 8092672 vs 8092560")

    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch, "save", full)
        with pytest.raises(
            TrainingError,
            match=r"disk full.*could not write checkpoint .*step-00000002.*earlier checkpoints are intact",
        ):
            ckpts.save(2, {"ema": {"w": torch.ones(2)}}, {"step": 2})
    assert [s for s, _ in ckpts.complete()] == [1] and not list(ckpts.root.glob(".tmp-*"))
