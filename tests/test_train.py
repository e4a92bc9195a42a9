"""Training runner, library side: dataset readers on real files, augmentation, schedule, loop, resume.

Real data comes from the shared data folder (Fashion-MNIST/MNIST IDX .gz, 20 CIFAR-10 PNGs): beside
the repository (``../shared/data``), inside it (``shared/data``) or at ``$RELU_SURGERY_DATA``;
tests that need it are skipped when it is absent.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from relu_surgery.errors import OutputExistsError, SurgeryError
from relu_surgery.train import (CheckpointError, DatasetError, TrainConfig, TrainConfigError, TrainingInterrupted, load_arrays, preset_values, run_compare, run_sweep, parse_sweep, run_training)
from relu_surgery.train.augment import AugmentParams, DeviceAugment, epoch_permutation
from relu_surgery.train.checkpoint import atomic_write, load_checkpoint
from relu_surgery.train.ddp import DistEnv
from relu_surgery.train.folder import FolderSource
from relu_surgery.train.metrics import COLUMNS, numeric_view, read_metrics
from relu_surgery.train.progress import Reporter
from relu_surgery.data.readers import read_idx
from relu_surgery.train.runner import KILL_ENV
from relu_surgery.train.schedule import LRSchedule
from relu_surgery.train.tiny import tiny_cnn, tiny_mlp

from .shared_data import DATA, needs_data, one_thread  # noqa: F401 (fixture)


FASHION_TEST_LABELS = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # the first ten Fashion-MNIST test labels
pytestmark = pytest.mark.usefixtures("one_thread")  # one intra-op thread: steady on shared CPUs
CPU = DistEnv(0, 1, 0, torch.device("cpu"))


def _config(**overrides) -> TrainConfig:
    base = dict(dataset="fashion-mnist", data_dir=str(DATA / "fashion-mnist") if DATA else None, epochs=2,
                batch_size=32, lr=0.05, limit_train=256, limit_test=128, progress=False, device="cpu")
    return TrainConfig(**{**base, **overrides})


def _cifar_pngs() -> list[Path]:
    return sorted((DATA / "cifar10-samples").glob("cifar10_*.png"))


def _png_array(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def write_cifar10(root: Path) -> Path:
    """CIFAR-10 python batches (5 x 4 training images, a 20-image test batch) made from the PNG samples."""
    pngs = _cifar_pngs()
    data = np.stack([_png_array(p) for p in pngs]).transpose(0, 3, 1, 2).reshape(len(pngs), -1)
    labels = [int(p.stem.split("_")[-1]) for p in pngs]
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i + 1}": slice(4 * i, 4 * i + 4) for i in range(5)} | {"test_batch": slice(0, 20)}
    for name, part in batches.items():
        with open(folder / name, "wb") as handle:
            pickle.dump({"batch_label": name, "labels": labels[part], "data": data[part],
                         "filenames": [p.name for p in pngs[part]]}, handle, protocol=2)
    return folder


class StepLosses(Reporter):
    """Records the loss of every training step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def step(self, step, loss):
        self.losses.append(loss())


class Notes(Reporter):
    """Records the runner's one-line messages."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def message(self, text):
        self.texts.append(text)


# ---------------------------------------------------------------- readers and layouts


@needs_data
def test_read_idx_reads_header_data_and_prefix():
    labels = read_idx(DATA / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == torch.uint8
    assert labels[:10].tolist() == FASHION_TEST_LABELS
    assert torch.bincount(labels.long()).tolist() == [1000] * 10
    images = read_idx(DATA / "fashion-mnist" / "t10k-images-idx3-ubyte.gz", limit=5)
    assert images.shape == (5, 28, 28)


@needs_data
@pytest.mark.parametrize("layout", ["raw", "MNIST/raw", "mnist"])
def test_mnist_layouts_raw_and_gz(tmp_path, layout):
    src = DATA / "mnist"
    folder = tmp_path / layout
    folder.mkdir(parents=True)
    for gz in src.glob("*.gz"):
        if gz.name.startswith("t10k"):  # unpacked, as torchvision leaves them
            (folder / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
        else:
            (folder / gz.name).symlink_to(gz)
    data = load_arrays("mnist", tmp_path, limit_train=100)
    ref = load_arrays("mnist", src, limit_train=100)
    assert data.train_x.shape == (100, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert torch.equal(data.test_x, ref.test_x) and torch.equal(data.train_y, ref.train_y)
    assert data.test_y[:3].tolist() == [7, 2, 1]  # the first MNIST test digits


@needs_data
def test_corrupt_idx_files_are_one_clear_error(tmp_path):
    for gz in (DATA / "fashion-mnist").glob("*.gz"):
        (tmp_path / gz.name).symlink_to(gz)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.unlink()
    labels.write_bytes((DATA / "fashion-mnist" / labels.name).read_bytes()[:2000])  # truncated gzip
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: cannot be read, the file is corrupt"):
        load_arrays("fashion-mnist", tmp_path)
    labels.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (5000).to_bytes(4, "big") + bytes(100)))
    with pytest.raises(DatasetError, match="truncated or corrupt .header promises 5000 data bytes, found 100"):
        load_arrays("fashion-mnist", tmp_path)
    labels.write_bytes(gzip.compress(b"PK\x03\x04" + bytes(100)))
    with pytest.raises(DatasetError, match="not an IDX file"):
        load_arrays("fashion-mnist", tmp_path)
    labels.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (10000).to_bytes(4, "big") + bytes([42]) * 10000))
    with pytest.raises(DatasetError, match=r"labels .* lie in \[42, 42\], expected \[0, 9\]"):
        load_arrays("fashion-mnist", tmp_path)


def test_missing_data_and_unknown_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_arrays("fashion-mnist", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"no Fashion-MNIST files found \(looked in .*FashionMNIST/raw"):
        load_arrays("fashion-mnist", tmp_path)
    with pytest.raises(DatasetError, match="no data directory for cifar10: pass --data-dir"):
        load_arrays("cifar10", None)
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'; choose one of cifar10"):
        TrainConfig(dataset="imagenet")
    with pytest.raises(DatasetError, match="not an ImageFolder tree"):
        FolderSource(TrainConfig(dataset="imagefolder", data_dir=str(tmp_path)), CPU)
    assert issubclass(DatasetError, SurgeryError)


@needs_data
def test_cifar_python_batches_round_trip_the_pngs(tmp_path):
    write_cifar10(tmp_path)
    data = load_arrays("cifar10", tmp_path)
    pngs = _cifar_pngs()
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (20, 3, 32, 32)
    assert data.test_y.tolist() == [int(p.stem.split("_")[-1]) for p in pngs]
    assert torch.equal(data.train_x[7].permute(1, 2, 0), torch.from_numpy(_png_array(pngs[7]).copy()))
    assert load_arrays("cifar10", tmp_path / "cifar-10-batches-py", limit_train=6).train_x.shape[0] == 6


@needs_data
def test_cifar_batch_with_foreign_objects_is_refused(tmp_path):
    folder = write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(folder / "data_batch_3", "wb") as handle:
        pickle.dump({"data": Evil(), "labels": [0]}, handle)
    with pytest.raises(DatasetError, match=r"data_batch_3: not a readable CIFAR python batch .refusing to unpickle"):
        load_arrays("cifar10", tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetError, match="no CIFAR-10 files found"):
        load_arrays("cifar10", tmp_path)


def test_svhn_mat_files(tmp_path):
    try:
        import scipy.io
    except ImportError:
        for name in ("train_32x32.mat", "test_32x32.mat"):
            (tmp_path / name).write_bytes(b"MATLAB 5.0")
        with pytest.raises(DatasetError, match="reading SVHN .mat files needs scipy: pip install scipy"):
            load_arrays("svhn", tmp_path)
        return
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3, 12), dtype=np.uint8)
    y = np.array([[10], [1], [2]] * 4, dtype=np.uint8)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        scipy.io.savemat(tmp_path / name, {"X": x, "y": y})
    data = load_arrays("svhn", tmp_path)
    assert data.train_y[:3].tolist() == [0, 1, 2]
    assert torch.equal(data.train_x[5], torch.from_numpy(x[:, :, :, 5]).permute(2, 0, 1))


def _image_tree(root: Path) -> Path:
    for split in ("train", "val"):
        for png in _cifar_pngs():
            label = png.stem.split("_")[-1]
            (root / split / f"class{label}").mkdir(parents=True, exist_ok=True)
            shutil.copy(png, root / split / f"class{label}" / png.name)
    return root


@needs_data
def test_imagefolder_batches_and_corrupt_image(tmp_path):
    root = _image_tree(tmp_path)
    cfg = TrainConfig(dataset="imagefolder", data_dir=str(root), batch_size=8, image_size=32, num_workers=0)
    source = FolderSource(cfg, CPU)
    assert (source.num_classes, source.steps_per_epoch, source.num_test) == (len({p.stem[-1] for p in _cifar_pngs()}), 2, 20)
    batches = list(source.train_batches(epoch=0, start_step=0))
    assert [tuple(x.shape) for x, _ in batches] == [(8, 3, 32, 32)] * 2
    again = list(source.train_batches(epoch=0, start_step=1))
    assert torch.equal(again[0][0], batches[1][0])  # per-sample seeds: same crops when resuming at step 1
    x, _ = next(iter(source.eval_batches()))
    assert abs(float(x.mean())) < 1.5 and x.shape[0] == 20
    bad = next((root / "train").glob("*/*.png"))
    bad.write_bytes(b"not a png")
    loader_cfg = cfg.replace(num_workers=1)
    with pytest.raises(DatasetError) as info:
        for _ in FolderSource(loader_cfg, CPU).train_batches(epoch=0, start_step=0):
            pass
    assert str(info.value).startswith(str(bad)) and "not a readable image" in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- augmentation and schedule


def test_device_augment_crop_flip_and_rank_slices():
    aug = DeviceAugment(mean=(0.0,) * 3, std=(1 / 255,) * 3, pad=4, flip=True, device=torch.device("cpu"))
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    params = AugmentParams(torch.tensor([4, 0, 8, 2]), torch.tensor([4, 8, 0, 5]), torch.tensor([False, True, False, True]))
    out = aug.apply(x, params)  # std 1/255, mean 0: values stay on the 0..255 scale
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4)).float()
    assert torch.equal(out[0], x[0].float())
    assert torch.equal(out[1], padded[1, :, 0:32, 8:40].flip(-1))
    assert torch.equal(out[2], padded[2, :, 8:40, 0:32])
    assert torch.equal(out[3], padded[3, :, 2:34, 5:37].flip(-1))
    full = aug.sample(8, seed=3, epoch=1, step=2)
    again = aug.sample(8, seed=3, epoch=1, step=2)
    assert torch.equal(full.top, again.top) and torch.equal(full.flip, again.flip)
    assert torch.equal(full.slice(4, 8).left, full.left[4:8])
    assert not torch.equal(aug.sample(64, 3, 1, 2).left, aug.sample(64, 3, 1, 3).left)
    assert torch.equal(epoch_permutation(100, 0, 5), epoch_permutation(100, 0, 5))
    assert not torch.equal(epoch_permutation(100, 0, 5), epoch_permutation(100, 0, 6))


def test_paper_presets_and_schedules():
    cfg = TrainConfig(dataset="cifar10", **preset_values("paper-cifar"))
    sched = LRSchedule(cfg, steps_per_epoch=390)  # 50k / 128, incomplete batch dropped
    assert (cfg.batch_size, cfg.momentum, cfg.weight_decay, cfg.epochs) == (128, 0.9, 1e-4, 164)
    assert sched.milestone_iters == (31980, 47970)  # the seeds' 32k / 48k
    assert [sched.lr_at(i) for i in (0, 399, 400, 31979, 31980, 47970, 63959)] == [0.01, 0.01, 0.1, 0.1, 0.01, 0.001, 0.001]
    assert TrainConfig(dataset="cifar10", **preset_values("paper-cifar-wrn")).weight_decay == 5e-4
    imagenet = LRSchedule(TrainConfig(dataset="imagefolder", **preset_values("paper-imagenet")), 5000)
    assert imagenet.milestone_iters == (150000, 300000, 450000) and imagenet.lr_at(449999) == 0.001
    cosine = LRSchedule(TrainConfig(dataset="mnist", epochs=10, schedule="cosine"), 100)
    assert cosine.lr_at(0) == 0.1 and cosine.lr_at(500) == pytest.approx(0.05) and cosine.lr_at(1000) == pytest.approx(0)
    with pytest.raises(TrainConfigError, match="unknown preset"):
        preset_values("paper-mnist")
    with pytest.raises(TrainConfigError, match=r"fraction milestones must lie in \(0, 1\]"):
        TrainConfig(dataset="mnist", milestones=(32000,))


# ---------------------------------------------------------------- the loop


@needs_data
def test_loss_decreases_and_run_files(tmp_path):
    torch.manual_seed(0)
    steps = StepLosses()
    result = run_training(tiny_mlp(hidden=64), _config(epochs=2, limit_train=512), tmp_path / "run", reporter=steps)
    assert len(steps.losses) == 32
    assert np.mean(steps.losses[-4:]) < 0.75 * np.mean(steps.losses[:4])
    history = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in history] == [1, 2] and history == result.history
    assert history[1]["train_loss"] < history[0]["train_loss"] and history[1]["test_top1_err"] < 60.0
    assert tuple(history[0]) == COLUMNS
    csv_lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == ",".join(COLUMNS) and len(csv_lines) == 3
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["lr"] == 0.05 and config["data"]["steps_per_epoch"] == 16
    assert config["model"]["num_params"] == result.num_params
    assert (tmp_path / "run" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = json.loads((tmp_path / "run" / "result.json").read_text())
    assert done["final"]["test_top1_err"] == history[-1]["test_top1_err"]
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "run" / "model.safetensors")
    assert torch.equal(saved["1.weight"], result.model.state_dict()["1.weight"])


def _dropout_cnn() -> nn.Module:
    torch.manual_seed(1)
    return tiny_cnn(num_classes=10, in_chans=1, width=4, norm=True, dropout=0.3)


@needs_data
def test_resume_after_stop_mid_epoch_reproduces_the_run(tmp_path, monkeypatch):
    cfg = _config(epochs=2, augment=True)  # BN, dropout and crop/flip: every RNG matters
    full = run_training(_dropout_cnn(), cfg, tmp_path / "full")
    monkeypatch.setenv(KILL_ENV, "11:TERM")  # 8 steps per epoch: SIGTERM after global step 11
    with pytest.raises(TrainingInterrupted, match="epoch 2, step 3"):
        run_training(_dropout_cnn(), cfg, tmp_path / "cut")
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert state["position"] == {"epoch": 1, "step": 3, "global_step": 11}
    assert [r["epoch"] for r in state["history"]] == [1]
    monkeypatch.delenv(KILL_ENV)
    resumed = run_training(_dropout_cnn(), cfg, tmp_path / "cut", resume=True)
    assert numeric_view(resumed.history) == numeric_view(full.history)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


@needs_data
def test_resume_from_epoch_checkpoint_and_refusals(tmp_path):
    cfg = _config(epochs=2)
    one = run_training(tiny_mlp(hidden=32), cfg.replace(epochs=1), tmp_path / "a")
    assert one.final["epoch"] == 1
    with pytest.raises(CheckpointError, match=r"settings differ from the run's \(epochs\)"):
        run_training(tiny_mlp(hidden=32), cfg, tmp_path / "a", resume=True)
    with pytest.raises(OutputExistsError, match="already holds a training run"):
        run_training(tiny_mlp(hidden=32), cfg.replace(epochs=1), tmp_path / "a")
    with pytest.raises(CheckpointError, match="does not fit this model"):
        run_training(tiny_mlp(hidden=16), cfg.replace(epochs=1), tmp_path / "a", resume=True)
    with pytest.raises(CheckpointError, match="holds no checkpoint.pt"):
        run_training(tiny_mlp(hidden=32), cfg, tmp_path / "empty", resume=True)
    (tmp_path / "a" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt or unreadable checkpoint"):
        run_training(tiny_mlp(hidden=32), cfg.replace(epochs=1), tmp_path / "a", resume=True)


@needs_data
def test_bf16_channels_last_and_progress_output(tmp_path, capsys):
    cfg = _config(epochs=1, amp="bf16", channels_last=True, progress=True)
    result = run_training(tiny_cnn(in_chans=1, width=4), cfg, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["environment"]["amp"] == "bfloat16" and config["environment"]["channels_last"] is True
    assert result.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert np.isfinite(result.final["train_loss"])
    out = capsys.readouterr().out
    assert "epoch   1/1" in out and "top-1 err" in out and "samples/s" in out


def test_fp32_switch_and_compile_backend():
    from relu_surgery.train.engine import Engine, amp_dtype

    assert amp_dtype(_config(amp="none"), torch.device("cuda")) is None  # float32 forced on a GPU
    assert amp_dtype(_config(), torch.device("cuda")) is torch.bfloat16
    cfg = _config(compile=True, compile_backend="eager")
    assert cfg.numeric_changes(_config()) == []  # a runtime switch: a run may resume with another
    with pytest.raises(TrainConfigError, match="compile backend must be a backend name"):
        _config(compile_backend="")
    engine = Engine(tiny_cnn(in_chans=1, width=4), cfg, CPU)
    assert engine.train_model is not engine.model and engine.train_model._orig_mod is engine.model
    loss, logits = engine.train_step(torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))
    assert logits.shape == (4, 10) and torch.isfinite(loss)


@needs_data
def test_run_without_matplotlib_skips_only_the_curves(tmp_path, monkeypatch):
    import relu_surgery.train.plots as plots

    def no_matplotlib(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'matplotlib'")

    monkeypatch.setattr(plots, "plot_curves", no_matplotlib)
    notes = Notes()
    run_training(tiny_mlp(hidden=16), _config(epochs=1, limit_train=64, limit_test=32), tmp_path / "r", reporter=notes)
    assert not (tmp_path / "r" / "curves.png").exists() and (tmp_path / "r" / "result.json").is_file()
    assert any("curves.png not drawn" in text and "matplotlib" in text for text in notes.texts)


def test_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd, "FashionMNIST", offline)
    with pytest.raises(DatasetError, match=r"could not download fashion-mnist into .*: <urlopen error"):
        load_arrays("fashion-mnist", tmp_path, download=True)
    with pytest.raises(DatasetError, match="imagefolder cannot be downloaded"):
        from relu_surgery.data.datasets import download_dataset

        download_dataset("imagefolder", tmp_path)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_text("old")

    def half_write(tmp: Path) -> None:
        tmp.write_text("new, but half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_write)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


@needs_data
def test_model_that_does_not_fit_the_dataset(tmp_path):
    with pytest.raises(TrainConfigError, match=r"outputs shape \(2, 5\) but the dataset has 10 classes"):
        run_training(tiny_mlp(num_classes=5), _config(), tmp_path / "r")
    with pytest.raises(TrainConfigError, match="does not accept 1x28x28 inputs"):
        run_training(tiny_mlp(in_chans=3, image_size=32), _config(), tmp_path / "r")
    with pytest.raises(TrainConfigError, match="larger than the 256 training samples"):
        run_training(tiny_mlp(), _config(batch_size=512), tmp_path / "r")


# ---------------------------------------------------------------- compare and sweep


def _erase_relu(model: nn.Module, proportion: float = 1.0, location: str = "last") -> nn.Module:
    """A stand-in rewrite for the library test: ReLUs -> Identity in a share of the units."""
    relus = [i for i, m in enumerate(model) if isinstance(m, nn.ReLU)]
    order = relus if location == "last" else relus[::-1]
    for index in order[: int(round(proportion * len(relus)))]:
        model[index] = nn.Identity()
    return model


@needs_data
def test_compare_and_sweep_tables(tmp_path):
    cfg = _config(epochs=1, limit_train=128, limit_test=64)

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return tiny_mlp(hidden=32, depth=2, norm=False)

    result = run_compare(build, lambda s: _erase_relu(build(s)), cfg, tmp_path / "cmp", seeds=[0, 1])
    single = run_training(build(1), cfg.replace(seed=1), tmp_path / "single")
    assert result.original.errors[1] == single.final["test_top1_err"]  # same seed, same data order
    assert result.original.params == result.rewritten.params == single.num_params
    assert result.difference == pytest.approx(result.rewritten.err_mean - result.original.err_mean)
    assert result.original.err_std == pytest.approx(float(np.std(result.original.errors, ddof=1)))
    rows = result.rows()
    assert rows[0][0] == "original" and rows[1][3] == f"{result.difference:+.2f}"
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["difference"] == result.difference
    assert sorted(p.name for p in (tmp_path / "cmp" / "rewritten").iterdir()) == ["seed0", "seed1"]
    again = run_compare(build, lambda s: _erase_relu(build(s)), cfg, tmp_path / "cmp", seeds=[0, 1])
    assert again == result  # finished runs are read back, not retrained

    points = parse_sweep(["proportion=0.5,1.0"])  # same folder: original/seed0 is reused, not retrained
    sweep = run_sweep(build, lambda p, s: _erase_relu(build(s), **p), points, cfg, tmp_path / "cmp", seeds=[0])
    assert [p.label for p in sweep.points] == ["proportion=0.5", "proportion=1.0"]
    assert sweep.baseline.errors == result.original.errors[:1]
    assert sweep.points[1].errors == result.rewritten.errors[:1]  # proportion 1.0 is the compare's rewrite
    assert len(sweep.rows()) == 3 and "| original |" in sweep.to_markdown()
    assert (tmp_path / "cmp" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
