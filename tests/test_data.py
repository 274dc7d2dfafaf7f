"""Dataset references: builtin:shapes determinism and balance, loaders, cifar10/imagefolder, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwaware import data
from hwaware.errors import HwawareError

SMALL = "builtin:shapes?n_train=300&n_val=200&n_test=200"


# --- builtin:shapes ---------------------------------------------------------------------------

def test_generator_is_deterministic_and_seeded():
    a_img, a_lab = data.generate_shapes(120, seed=3, stream=0)
    b_img, b_lab = data.generate_shapes(120, seed=3, stream=0)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    c_img, _ = data.generate_shapes(120, seed=4, stream=0)
    assert not np.array_equal(a_img, c_img)


def test_dataset_is_cached_and_identical_after_cache_clear():
    x1 = data.load_dataset(SMALL, "val").images
    hits = data._shapes_arrays.cache_info().hits
    assert torch.equal(data.load_dataset(SMALL, "val").images, x1)
    assert data._shapes_arrays.cache_info().hits == hits + 1  # generated once per process
    data._shapes_arrays.cache_clear()
    assert torch.equal(data.load_dataset(SMALL, "val").images, x1)  # regenerated identically


def test_splits_share_no_image():
    imgs = {s: data.load_dataset(SMALL, s).images.reshape(-1, 3 * 32 * 32).numpy() for s in data.SPLITS}
    keys = {s: {row.tobytes() for row in imgs[s]} for s in data.SPLITS}
    assert len(keys["train"]) == 300  # no duplicate inside a split either
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]


def test_classes_are_balanced_and_items_well_formed():
    ds = data.load_dataset("builtin:shapes", "test")
    assert len(ds) == 1000
    assert np.bincount(ds.labels.numpy(), minlength=10).tolist() == [100] * 10
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    # normalized: roughly zero mean, unit std per channel (computed here, not taken from the module)
    mean = ds.images.mean(dim=(0, 2, 3))
    std = ds.images.std(dim=(0, 2, 3))
    assert torch.all(mean.abs() < 0.1), mean
    assert torch.all((std - 1).abs() < 0.1), std


@settings(deadline=None, max_examples=15)
@given(n=st.integers(1, 97), seed=st.integers(0, 2**31 - 1), stream=st.integers(0, 2))
def test_generator_properties(n, seed, stream):
    img, lab = data.generate_shapes(n, seed=seed, stream=stream)
    assert img.shape == (n, 3, 32, 32) and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0
    counts = np.bincount(lab, minlength=10)
    assert counts.max() - counts.min() <= 1


def test_classes_differ_in_their_pixels():
    """The object is drawn: within the object the image departs from a smooth background, and the
    texture classes have more edges than the filled shapes (a cheap independent sanity check)."""
    img, lab = data.generate_shapes(400, seed=0, stream=0)
    grey = img.mean(axis=1)
    edges = np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2))
    shapes_edges = edges[lab < 5].mean()
    texture_edges = edges[lab >= 5].mean()
    assert texture_edges > 1.1 * shapes_edges


def test_ref_options_and_errors():
    assert len(data.load_dataset("builtin:shapes?n_test=50", "test")) == 50
    assert len(data.load_dataset("builtin:shapes", "test", n_test=30)) == 30
    r = data.parse_data_ref("builtin:shapes?seed=2", n_test=40)
    r2 = data.parse_data_ref(r, n_val=20)  # options of a parsed ref survive further kwargs
    assert r2.options == {"seed": 2, "n_test": 40, "n_val": 20}
    with pytest.raises(HwawareError, match="unknown option 'n_trian'.*n_train"):
        data.load_dataset("builtin:shapes?n_trian=5")
    with pytest.raises(HwawareError, match="must be an integer"):
        data.load_dataset("builtin:shapes?seed=abc")
    with pytest.raises(HwawareError, match="must be positive"):
        data.load_dataset("builtin:shapes?n_val=0", "val")
    with pytest.raises(HwawareError, match="unknown split 'valid'.*val"):
        data.load_dataset("builtin:shapes", "valid")
    with pytest.raises(HwawareError) as e:
        data.load_dataset("mnist:/tmp/x")
    msg = str(e.value)
    assert "\n" not in msg
    for scheme in ("builtin:shapes", "cifar10:PATH", "imagefolder:PATH"):
        assert scheme in msg
    with pytest.raises(HwawareError, match="did you mean 'builtin:shapes'"):
        data.num_classes("builtin:shape")


def test_metadata_functions():
    assert data.num_classes("builtin:shapes") == 10
    assert data.input_shape("builtin:shapes") == (3, 32, 32)
    assert data.input_shape("cifar10:/nowhere") == (3, 32, 32)
    assert data.input_shape("imagefolder:/nowhere?size=227") == (3, 227, 227)
    text = data.describe("builtin:shapes?n_train=123")
    assert "train 123" in text and "circle" in text and "\n" not in text


# --- loaders ----------------------------------------------------------------------------------

def _labels(loader):
    return torch.cat([y for _, y in loader]).tolist()


def test_loader_limit_and_batches():
    loader = data.make_loader(SMALL, "train", batch_size=10, limit=37)
    sizes = [x.shape[0] for x, _ in loader]
    assert sizes == [10, 10, 10, 7]
    full = data.make_loader(SMALL, "train", batch_size=64, limit=1000)  # limit above size: all
    assert sum(x.shape[0] for x, _ in full) == 300
    with pytest.raises(HwawareError, match="limit"):
        data.make_loader(SMALL, "train", limit=0)
    with pytest.raises(HwawareError, match="batch_size"):
        data.make_loader(SMALL, "train", batch_size=0)


def test_loader_order_depends_only_on_seed():
    a = _labels(data.make_loader(SMALL, "train", batch_size=32, seed=1))
    b = _labels(data.make_loader(SMALL, "train", batch_size=32, seed=1))
    c = _labels(data.make_loader(SMALL, "train", batch_size=32, seed=2))
    assert a == b and a != c
    assert sorted(a) == sorted(c)
    # eval splits are not shuffled by default: the loader follows dataset order
    ds = data.load_dataset(SMALL, "test")
    x, y = next(iter(data.make_loader(SMALL, "test", batch_size=16)))
    assert torch.equal(x, ds.images[:16]) and torch.equal(y, ds.labels[:16])


# --- cifar10 ----------------------------------------------------------------------------------

def test_cifar10_missing_path(tmp_path):
    with pytest.raises(HwawareError) as e:
        data.load_dataset(f"cifar10:{tmp_path / 'nope'}", "test")
    assert str(tmp_path / "nope") in str(e.value) and "cifar-10-batches-py" in str(e.value)


def test_cifar10_reads_the_python_layout(tmp_path, monkeypatch):
    """A fake 'cifar-10-batches-py' folder (the real files' md5 checks are patched out)."""
    import torchvision.datasets.cifar as cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    per = {n: 1200 if n != "test_batch" else 40 for n in names}
    for n in names:
        d = {"data": rng.integers(0, 256, size=(per[n], 3072), dtype=np.uint8),
             "labels": rng.integers(0, 10, size=per[n]).tolist()}
        (folder / n).write_bytes(pickle.dumps(d))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)

    train = data.load_dataset(f"cifar10:{tmp_path}", "train")
    val = data.load_dataset(f"cifar10:{folder}", "val")  # the batches folder itself works too
    test = data.load_dataset(f"cifar10:{tmp_path}", "test")
    assert (len(train), len(val), len(test)) == (6000 - 5000, 5000, 40)
    x, y = test[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10
    # normalization with the CIFAR statistics, checked against the raw bytes
    raw = pickle.loads((folder / "test_batch").read_bytes())["data"][0].reshape(3, 32, 32) / 255.0
    mean = torch.tensor(data.CIFAR10_MEAN)[:, None, None]
    std = torch.tensor(data.CIFAR10_STD)[:, None, None]
    assert torch.allclose(x, (torch.tensor(raw, dtype=torch.float32) - mean) / std, atol=1e-5)


# --- imagefolder ------------------------------------------------------------------------------

def _write_images(root, classes, per_class, size=(40, 30)):
    from PIL import Image

    for i, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            arr = np.full((size[1], size[0], 3), 20 * i + k, dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{k}.png")


def test_imagefolder_splits_share_one_class_list(tmp_path):
    _write_images(tmp_path / "train", ["cat", "dog", "eel"], 2)
    _write_images(tmp_path / "val", ["cat", "eel"], 1)  # 'dog' missing: eel must stay label 2
    ref = f"imagefolder:{tmp_path}?size=24"
    assert data.num_classes(ref) == 3
    val = data.load_dataset(ref, "val")
    assert sorted(val.targets) == [0, 2]
    x, _ = val[0]
    assert x.shape == (3, 24, 24) == data.input_shape(ref)
    with pytest.raises(HwawareError, match="no 'test' split.*train, val"):
        data.load_dataset(ref, "test")
    assert "splits: train, val" in data.describe(ref)


def test_imagefolder_flat_folder_and_errors(tmp_path):
    _write_images(tmp_path / "flat", ["a", "b"], 3)
    ds = data.load_dataset(f"imagefolder:{tmp_path / 'flat'}", "test", size=16)
    assert len(ds) == 6 and ds[0][0].shape == (3, 16, 16)
    with pytest.raises(HwawareError, match="not a directory"):
        data.load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HwawareError, match="no class folders"):
        data.load_dataset(f"imagefolder:{tmp_path / 'empty'}")


def test_first_images_stops_early_and_keeps_order():
    from hwaware.data import first_images

    read = []

    def batches():
        for i in range(10):
            read.append(i)
            yield torch.full((4, 1), float(i)), torch.zeros(4)

    x = first_images(batches(), 6)
    assert x.shape == (6, 1)
    assert x[:, 0].tolist() == [0, 0, 0, 0, 1, 1]
    assert read == [0, 1]  # the third batch is never read
    assert first_images(iter([(torch.ones(2, 1), None)]), 5).shape == (2, 1)
    with pytest.raises(HwawareError, match="no batches"):
        first_images(iter([]), 3)
