"""Data sources beyond the built-in four (image folders, torchvision classes, users' code), the two data paths
and their agreement, normalisation statistics and the bad inputs each source must name."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.config import ConfigError, TrainSettings, TrialConfig
from bench.data import DataError, Dataset, data_key, load_dataset
from bench.recipe import Augment
from bench.sources import StreamData, index_folder, parse_normalize, stratified
from bench.trainer import train
from helpers import write_idx, write_image_folder

TIMES = ("epoch_time_s", "steps_time_s", "method_hook_time_s", "zeroing_metrics_time_s")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images") / "shapes")


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(folder, out)
    index_folder.cache_clear()
    return out


def test_an_image_folder_loads_decoded_resized_with_its_classes_and_cached_statistics(folder):
    data = load_dataset(f"imagefolder:{folder}", image_size=32)
    assert isinstance(data, Dataset)   # 400 small images: well within the memory path's budget
    assert data.train_x.shape == (300, 3, 32, 32) and data.test_x.shape == (100, 3, 32, 32)
    assert data.num_classes == 10 and data.info["classes"][0] == "class_00"
    assert np.bincount(data.train_y).tolist() == [30] * 10
    # the image itself: shorter side 40 -> 32 (bilinear, antialiased), no crop needed for a square
    first = Image.open(folder / "train" / "class_00" / "000.png").convert("RGB").resize((32, 32), Image.BILINEAR)
    assert np.array_equal(data.train_x[0], np.asarray(first).transpose(2, 0, 1))
    # mean/std of the training split on [0, 1], computed once and cached beside the data
    scaled = data.train_x.astype(np.float64) / 255
    assert np.allclose(data.mean, scaled.mean(axis=(0, 2, 3)), atol=1e-9)
    assert np.allclose(data.std, scaled.std(axis=(0, 2, 3)), atol=1e-9)
    cached = list((folder / ".bench").glob("stats-*.json"))
    assert len(cached) == 1
    cached[0].write_text(cached[0].read_text().replace(f"{data.mean[0]}", "0.25", 1))
    assert load_dataset(f"imagefolder:{folder}", image_size=32).mean[0] == 0.25   # read back, not recomputed
    cached[0].unlink()


def test_normalize_replaces_the_statistics_and_bad_values_are_refused():
    assert parse_normalize("imagenet") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert parse_normalize("0.5/0.25") == ((0.5,), (0.25,))
    for bad in ("0.5,0.5/0.2", "0.5/0", "x/y", "0.5"):
        with pytest.raises(ValueError, match="MEAN1,MEAN2,MEAN3/STD1,STD2,STD3"):
            parse_normalize(bad)
    with pytest.raises(ConfigError, match="--normalize"):
        TrainSettings(dataset="synthetic", normalize="0.5")
    data = load_dataset("synthetic", input_shape=(1, 28, 28), normalize="0.5/0.25")
    assert data.mean == (0.5,) and data.std == (0.25,)
    with pytest.raises(DataError, match="1 normalisation channels for 3-channel"):
        load_dataset("synthetic", input_shape=(3, 8, 8), normalize="0.5/0.25")


def test_the_folder_key_is_its_content_not_its_path(folder, tmp_path):
    moved = _copy(folder, tmp_path)
    key = data_key(f"imagefolder:{folder}")
    assert key.startswith("imagefolder:sha256:") and str(folder) not in key
    assert data_key(f"imagefolder:{moved}") == key
    trial = TrialConfig("none", {}, "none", 0, TrainSettings(dataset=f"imagefolder:{folder}", model="vgg11"))
    moved_trial = TrialConfig("none", {}, "none", 0, TrainSettings(dataset=f"imagefolder:{moved}", model="vgg11"))
    assert trial.key == moved_trial.key
    image = moved / "val" / "class_03" / "004.png"
    Image.new("RGB", (40, 40), (1, 2, 3)).save(image)
    index_folder.cache_clear()
    assert data_key(f"imagefolder:{moved}") != key


def test_limit_train_on_a_folder_is_a_seeded_subset_stratified_by_class(folder):
    data = load_dataset(f"imagefolder:{folder}", image_size=32, limit_train=50, limit_test=20)
    assert np.bincount(data.train_y).tolist() == [5] * 10   # the first 50 files would be classes 0 and 1
    assert np.bincount(data.test_y).tolist() == [2] * 10
    again = load_dataset(f"imagefolder:{folder}", image_size=32, limit_train=50, limit_test=20)
    assert np.array_equal(again.train_x, data.train_x)
    labels = np.repeat(np.arange(3), [50, 30, 20])
    keep = stratified(labels, 10)
    assert np.bincount(labels[keep]).tolist() == [5, 3, 2] and len(set(keep.tolist())) == 10


def _metrics(data, **settings) -> list[dict]:
    base = dict(model="lenet5", dataset="synthetic", epochs=2, batch_size=32, limit_test=None)
    cfg = TrialConfig("l1l2", {"lam": 300.0}, "cumulative:0.01", 0,
                      TrainSettings(**{**base, **settings}))
    rows: list[dict] = []
    train(cfg, data, lambda epoch, values: rows.append({k: v for k, v in values.items() if k not in TIMES}))
    return rows


@pytest.mark.parametrize("augment", ["none", "crop-flip"])
def test_the_memory_and_streaming_paths_give_the_same_metrics(augment):
    memory = load_dataset("synthetic", input_shape=(1, 28, 28), limit_train=300, limit_test=100)
    stream = load_dataset("synthetic", input_shape=(1, 28, 28), limit_train=300, limit_test=100, data_path="stream")
    assert isinstance(memory, Dataset) and isinstance(stream, StreamData)
    a = _metrics(memory, augment=augment, data_path="memory")
    b = _metrics(stream, augment=augment, data_path="stream", loader_workers=2)
    assert a == b and a[-1]["total_sparsity"] > 0   # every metric, train loss and accuracy included


def test_an_image_folder_streamed_trains_like_it_does_in_memory(folder):
    memory = load_dataset(f"imagefolder:{folder}", image_size=32, limit_train=100, limit_test=40)
    stream = load_dataset(f"imagefolder:{folder}", image_size=32, limit_train=100, limit_test=40,
                          data_path="stream")
    assert isinstance(stream, StreamData) and len(stream.train) == 100
    settings = dict(model="lenet5", dataset=f"imagefolder:{folder}", image_size=32, augment="none")
    assert _metrics(memory, **settings) == _metrics(stream, **settings, data_path="stream")
    # standard augmentation on the streaming path runs in the workers, from the full-size files
    rows = _metrics(stream, **{**settings, "augment": "standard"}, data_path="stream")
    assert len(rows) == 2 and np.isfinite(rows[-1]["train_loss"])


def test_standard_augmentation_on_the_device_crops_and_resizes_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16) % 251
    out = Augment("standard", g)(x.to(torch.uint8))
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 255
    # the full box, not flipped, reproduces the image exactly (bilinear at pixel centres)
    whole = Augment("standard", torch.Generator().manual_seed(0))._resized_crop(x, scale=(1.0, 1.0),
                                                                               ratio=(1.0, 1.0))
    assert any(torch.equal(whole[i], x[i]) or torch.equal(whole[i], x[i].flip(2)) for i in range(2))
    assert torch.allclose(whole[0], x[0]) or torch.allclose(whole[0], x[0].flip(2))


def test_augment_defaults_to_none_on_built_in_datasets_and_standard_elsewhere(folder):
    assert TrainSettings().augment == "none"
    assert TrainSettings(dataset="cifar10", model="vgg11").augment == "none"
    assert TrainSettings(dataset=f"imagefolder:{folder}", model="vgg11").augment == "standard"
    old = TrialConfig("none", {}, "none", 0, TrainSettings())
    assert "augment" not in str(old.to_dict()["train"]) or old.train.augment == "none"


# -- bad input ---------------------------------------------------------------------------------------------

def test_bad_image_folders_are_errors_that_name_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="expected .*/train and .*/val .*the folder is empty"):
        load_dataset(f"imagefolder:{empty}")
    with pytest.raises(DataError, match="no such folder"):
        TrainSettings(dataset=f"imagefolder:{tmp_path / 'nowhere'}")

    root = write_image_folder(tmp_path / "a", classes=3, size=8, n_train=2, n_val=1)
    (root / "train" / "class_01" / "000.png").write_bytes(b"not a png at all")
    index_folder.cache_clear()
    with pytest.raises(DataError, match="class_01/000.png: cannot read this image"):
        load_dataset(f"imagefolder:{root}")

    root = write_image_folder(tmp_path / "b", classes=3, size=8, n_train=2, n_val=1)
    for f in (root / "val" / "class_02").iterdir():
        f.unlink()
    (root / "val" / "class_02" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="val/class_02: class folder without images"):
        load_dataset(f"imagefolder:{root}")

    root = write_image_folder(tmp_path / "c", classes=3, size=8, n_train=2, n_val=1, split="test")
    shutil.rmtree(root / "test" / "class_01")
    with pytest.raises(DataError, match="class class_01 in train/ but not in test/"):
        load_dataset(f"imagefolder:{root}")

    root = write_image_folder(tmp_path / "d", classes=1, size=8, n_train=2, n_val=1)
    index_folder.cache_clear()
    with pytest.raises(DataError, match="1 class: a classifier needs at least two"):
        load_dataset(f"imagefolder:{root}")


def test_16_bit_grey_images_are_scaled_to_8_bits_not_clipped(tmp_path):
    """A 16-bit grey PNG (mode I;16) spanning 0..65535 becomes 0..255 greys, as an 8-bit one would
    (PIL's convert("RGB") clips it: 99.6 % of this ramp would be white)."""
    from bench.sources import open_image
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)   # 0..65520
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    decoded = np.asarray(open_image(str(tmp_path / "grey16.png")))
    assert decoded.shape == (64, 64, 3) and decoded.dtype == np.uint8
    assert np.array_equal(decoded[..., 0], (ramp >> 8).astype(np.uint8))
    assert np.array_equal(decoded[..., 0], decoded[..., 2])


def test_torchvision_classes_load_from_their_files_and_missing_files_are_listed(tmp_path):
    raw = tmp_path / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 40).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 20).astype(np.uint8)}
    for stem, arr in arrays.items():
        write_idx(raw / stem, arr)
    data = load_dataset("torchvision:KMNIST", data_dir=tmp_path, download=False)
    assert isinstance(data, Dataset) and data.train_x.shape == (40, 1, 28, 28) and data.n_test == 20
    assert np.array_equal(data.train_x[:, 0], arrays["train-images-idx3-ubyte"])
    assert np.allclose(data.mean, [arrays["train-images-idx3-ubyte"].mean() / 255])

    with pytest.raises(DataError) as err:
        load_dataset("torchvision:SVHN", data_dir=tmp_path / "none", download=False)
    text = str(err.value)
    assert "Downloads are disabled" in text and str(tmp_path / "none") in text
    assert "train_32x32.mat" in text and "test_32x32.mat" in text
    with pytest.raises(DataError, match="torchvision.datasets has no class 'SVNH'"):
        TrainSettings(dataset="torchvision:SVNH")


PLUGIN = '''
import numpy as np
import torch
from bench.sources import register_dataset


def arrays(image_size=None):
    rng = np.random.default_rng(1)
    return {"train_x": rng.integers(0, 256, (30, 12, 12), dtype=np.uint8), "train_y": np.arange(30) % 3,
            "test_x": rng.integers(0, 256, (9, 12, 12), dtype=np.uint8), "test_y": np.arange(9) % 3}


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n
    def __len__(self):
        return self.n
    def __getitem__(self, i):
        return torch.full((10, 10, 3), i, dtype=torch.uint8), i % 4


@register_dataset("tiny-pairs")
def pairs():
    return Pairs(16), Pairs(8)
'''


def test_datasets_from_users_code_arrays_or_torch_datasets(tmp_path):
    file = tmp_path / "my_data.py"
    file.write_text(PLUGIN)
    data = load_dataset(f"{file}:arrays")
    assert isinstance(data, Dataset) and data.train_x.shape == (30, 1, 12, 12) and data.num_classes == 3
    assert data.name == "my_data.py:arrays"
    key = data_key(f"{file}:arrays")
    assert key.startswith("file-sha256:") and str(tmp_path) not in key
    from bench.usercode import load_callable
    load_callable(f"{file}:pairs")   # importing the file registers tiny-pairs
    streamed = load_dataset("tiny-pairs", data_path="stream")
    assert isinstance(streamed, StreamData) and streamed.input_shape == (3, 10, 10) and streamed.num_classes == 4
    x, y = streamed.train[5]
    assert x.shape == (3, 10, 10) and int(x[0, 0, 0]) == 5 and y == 1
    in_memory = load_dataset("tiny-pairs")
    assert isinstance(in_memory, Dataset) and in_memory.train_x[7, 2, 3, 3] == 7
    with pytest.raises(DataError, match="dataset source .*: no such file"):
        TrainSettings(dataset=f"{tmp_path / 'missing.py'}:arrays")


def test_image_size_resizes_built_in_arrays_and_feeds_the_model(tmp_path):
    data = load_dataset("synthetic", input_shape=(1, 28, 28), image_size=20)
    assert data.input_shape == (1, 20, 20)
    from helpers import write_mnist
    write_mnist(tmp_path / "mnist")
    resized = load_dataset("mnist", data_dir=tmp_path, image_size=32, download=False)
    assert resized.input_shape == (1, 32, 32) and resized.n_train == 64
    assert os.path.isdir(tmp_path / "mnist")


def test_val_split_holds_out_a_stratified_seeded_part_of_training_on_both_paths():
    from bench.data import hold_out
    data = load_dataset("synthetic", input_shape=(1, 28, 28), limit_train=300, limit_test=100, val_split=0.2)
    assert data.n_train == 240 and len(data.val_x) == 60
    assert "240 train / 60 validation / 100 test" in data.describe()
    full = load_dataset("synthetic", input_shape=(1, 28, 28), limit_train=300, limit_test=100)
    counts = np.bincount(full.train_y, minlength=10)
    assert np.abs(np.bincount(data.val_y, minlength=10) - counts * 0.2).max() <= 1   # stratified
    # the two parts are the training split, disjoint, and the same in every load
    rows = {r.tobytes() for r in full.train_x}
    assert {r.tobytes() for r in data.train_x} | {r.tobytes() for r in data.val_x} == rows
    assert not ({r.tobytes() for r in data.train_x} & {r.tobytes() for r in data.val_x})
    with pytest.raises(DataError, match="leaves 0 of 300"):
        hold_out(load_dataset("synthetic", input_shape=(1, 28, 28), limit_train=300), 0.001)
    stream = load_dataset("synthetic", input_shape=(1, 28, 28), limit_train=300, limit_test=100, val_split=0.2,
                          data_path="stream")
    assert len(stream.val) == 60 and stream.n_train == 240
    a = _metrics(data, val_split=0.2)
    b = _metrics(stream, val_split=0.2, data_path="stream")
    assert a == b and all(0 <= r["val_accuracy"] <= 1 for r in a)
    assert "val_accuracy" not in _metrics(full)[0]
