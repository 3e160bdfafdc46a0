"""suanli.data: DataLoader against torch.utils.data semantics, shuffling, prefetch, splits, MNIST IDX files,
the bundled digits, character-level text."""
from __future__ import annotations

import collections
import gzip
import os
import struct
import threading
import time

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import suanli
from suanli.data import (MNIST, CharDataset, ConcatDataset, DataLoader, Dataset, Digits, IDXError, Subset,
                         TensorDataset, default_collate, load_digits, load_shakespeare, random_split,
                         read_idx, upsample)

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "shared", "data")
MNIST_DIR = os.path.join(SHARED, "mnist")
SHAKESPEARE = os.path.join(SHARED, "tinyshakespeare", "input.txt")


def _np(x):
    return x.numpy() if isinstance(x, (suanli.Tensor, torch.Tensor)) else np.asarray(x)


def _same_batch(ours, theirs):
    """Same structure (list/dict/namedtuple) and same values and dtypes (torch dtype names)."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, suanli.Tensor), type(ours)
        assert ours.shape == tuple(theirs.shape)
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", ""), (ours.dtype, theirs.dtype)
        np.testing.assert_array_equal(_np(ours), _np(theirs))
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs)
        for k in theirs:
            _same_batch(ours[k], theirs[k])
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs), (type(ours), type(theirs))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _same_batch(a, b)
    else:
        assert ours == theirs


class ListDataset(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


# ---------------------------------------------------------------------------------------- DataLoader
@pytest.mark.parametrize("n", [1, 7, 12])
@pytest.mark.parametrize("batch_size", [1, 3, 12, 13])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_match_torch(n, batch_size, drop_last):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n)
    theirs = tud.DataLoader(tud.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=batch_size,
                            drop_last=drop_last)
    if drop_last and n < batch_size:
        with pytest.raises(ValueError, match="drop_last=True with fewer samples than one batch"):
            DataLoader(TensorDataset(x, y), batch_size=batch_size, drop_last=drop_last)
        assert len(theirs) == 0
        return
    ours = DataLoader(TensorDataset(x, y), batch_size=batch_size, drop_last=drop_last)
    slow = DataLoader(TensorDataset(x, y), batch_size=batch_size, drop_last=drop_last, collate_fn=default_collate)
    assert len(ours) == len(theirs) == len(slow)
    assert ours._fast and not slow._fast
    got, ref, got_slow = list(ours), list(theirs), list(slow)
    assert len(got) == len(ref)
    for a, b, c in zip(got, ref, got_slow):
        _same_batch(a, b)            # fast path == torch
        _same_batch(c, b)            # per-item path == torch


Point = collections.namedtuple("Point", ["x", "y"])


def _samples(i):
    return [
        {"img": np.full((2, 3), i, np.float32), "label": i, "w": 0.5 * i, "ok": i % 2 == 0, "name": f"s{i}",
         "t": suanli.tensor([i, i + 1])},
        (np.int64(i), [np.float32(i), np.arange(3) + i]),
        Point(suanli.full((2,), float(i)), i),
    ]


def _torchify(obj):
    if isinstance(obj, suanli.Tensor):
        return torch.from_numpy(obj.numpy().copy())
    if isinstance(obj, dict):
        return {k: _torchify(v) for k, v in obj.items()}
    if isinstance(obj, Point):
        return Point(*map(_torchify, obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(map(_torchify, obj))
    return obj


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_default_collate_structures_match_torch(kind):
    batch = [_samples(i)[kind] for i in range(4)]
    ours = default_collate(batch)
    theirs = tud.default_collate([_torchify(s) for s in batch])
    _same_batch(ours, theirs)


def test_collate_errors():
    with pytest.raises(ValueError, match="cannot stack arrays of different shapes") as info:
        default_collate([np.zeros(3), np.zeros(3), np.zeros(4)])
    assert "item 2 has shape (4,)" in str(info.value) and "collate_fn" in str(info.value)
    with pytest.raises(ValueError, match="same number of fields"):
        default_collate([(1, 2), (1, 2, 3)])
    with pytest.raises(TypeError, match="found object"):
        default_collate([object(), object()])


def test_shuffle_is_seeded_and_a_permutation():
    ds = TensorDataset(np.arange(50))

    def epoch(loader):
        return np.concatenate([_np(b[0]) for b in loader])

    suanli.manual_seed(3)
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    e1, e2 = epoch(loader), epoch(loader)
    assert sorted(e1) == list(range(50)) and sorted(e2) == list(range(50))
    assert not np.array_equal(e1, e2) and not np.array_equal(e1, np.arange(50))
    suanli.manual_seed(3)
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    np.testing.assert_array_equal(epoch(loader), e1)
    np.testing.assert_array_equal(epoch(loader), e2)
    # an explicit generator leaves the global stream alone
    suanli.manual_seed(3)
    before = suanli.random.get_rng_state()
    a = epoch(DataLoader(ds, batch_size=8, shuffle=True, generator=suanli.Generator(1)))
    assert suanli.random.get_rng_state() == before
    np.testing.assert_array_equal(a, epoch(DataLoader(ds, batch_size=8, shuffle=True, generator=suanli.Generator(1))))
    # the epoch's order is drawn at iter() time, as in torch
    suanli.manual_seed(3)
    it = iter(loader)
    suanli.rand(100)
    np.testing.assert_array_equal(np.concatenate([_np(b[0]) for b in it]), e1)


class SlowDataset(Dataset):
    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise KeyError(f"item {i} is broken")
        time.sleep(0.0005)
        return np.array([i, i * i], np.int64), float(i)


@pytest.mark.parametrize("prefetch", [1, 3])
def test_prefetch_gives_identical_batches(prefetch):
    for ds in (SlowDataset(37), TensorDataset(np.random.default_rng(0).normal(size=(37, 3)), np.arange(37))):
        suanli.manual_seed(11)
        plain = [list(DataLoader(ds, batch_size=5, shuffle=True)) for _ in range(2)]
        suanli.manual_seed(11)
        fetched = [list(DataLoader(ds, batch_size=5, shuffle=True, prefetch=prefetch)) for _ in range(2)]
        for ep_a, ep_b in zip(plain, fetched):
            assert len(ep_a) == len(ep_b) == 8
            for a, b in zip(ep_a, ep_b):
                for u, v in zip(a, b):
                    assert _np(u).tobytes() == _np(v).tobytes()


def test_prefetch_propagates_worker_errors_and_stops_its_thread():
    baseline = threading.active_count()
    loader = DataLoader(SlowDataset(20, fail_at=13), batch_size=4, prefetch=2)
    seen = []
    with pytest.raises(KeyError, match="item 13 is broken") as info:
        for xb, _ in loader:
            seen.append(_np(xb)[:, 0].tolist())
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]          # failure surfaces at batch 3
    assert any("prefetch thread" in note for note in getattr(info.value, "__notes__", []))
    for _ in DataLoader(SlowDataset(40), batch_size=2, prefetch=2):      # early exit of the consumer
        break
    deadline = time.time() + 5
    while threading.active_count() > baseline and time.time() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == baseline


def test_loader_errors():
    with pytest.raises(ValueError, match="the dataset is empty"):
        DataLoader(TensorDataset(np.zeros((0, 2))), batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer") as info:
        DataLoader(TensorDataset(np.zeros((4, 2))), batch_size=0)
    assert "batch_size=0" in str(info.value)
    with pytest.raises(ValueError, match="prefetch must be an integer >= 0"):
        DataLoader(TensorDataset(np.zeros((4, 2))), prefetch=-1)
    with pytest.raises(TypeError, match="map-style"):
        DataLoader(iter([1, 2]))
    with pytest.raises(ValueError, match="size mismatch between tensors"):
        TensorDataset(np.zeros(3), np.zeros(4))
    with pytest.raises(IndexError, match="out of range"):
        TensorDataset(np.zeros(3))[3]


def test_loader_resumes_mid_epoch():
    ds = TensorDataset(np.arange(30))
    suanli.manual_seed(5)
    loader = DataLoader(ds, batch_size=4, shuffle=True)
    full = [_np(b[0]).tolist() for b in loader] + [_np(b[0]).tolist() for b in loader]

    suanli.manual_seed(5)
    loader = DataLoader(ds, batch_size=4, shuffle=True)
    it = iter(loader)
    head = [_np(next(it)[0]).tolist() for _ in range(3)]
    state, rng = loader.state_dict(), suanli.random.get_rng_state()
    assert state["consumed"] == 3

    suanli.manual_seed(999)
    resumed = DataLoader(ds, batch_size=4, shuffle=True)
    resumed.load_state_dict(state)
    suanli.random.set_rng_state(rng)
    rest = [_np(b[0]).tolist() for b in resumed] + [_np(b[0]).tolist() for b in resumed]
    assert head + rest == full
    with pytest.raises(ValueError, match="different number of batches"):
        DataLoader(ds, batch_size=5).load_state_dict(state)


def test_loader_state_in_a_checkpoint(tmp_path):
    from suanli.io import load_checkpoint, save_checkpoint
    ds = TensorDataset(np.arange(20))
    loader = DataLoader(ds, batch_size=3, shuffle=True, generator=suanli.Generator(4))
    it = iter(loader)
    next(it)
    save_checkpoint(tmp_path / "c.safetensors", extra={"loader": loader})
    expect = [_np(b[0]).tolist() for b in it]
    fresh = DataLoader(ds, batch_size=3, shuffle=True, generator=suanli.Generator(0))
    load_checkpoint(tmp_path / "c.safetensors", extra={"loader": fresh})
    assert [_np(b[0]).tolist() for b in fresh] == expect


def test_subset_concat_and_random_split():
    ds = TensorDataset(np.arange(10) * 10)
    sub = Subset(ds, [7, 2, 2])
    assert len(sub) == 3 and sub[0][0].item() == 70 and hasattr(sub, "fetch_batch")
    assert [_np(b[0]).tolist() for b in DataLoader(sub, batch_size=2)] == [[70, 20], [20]]
    assert not hasattr(Subset(ListDataset([1, 2]), [0]), "fetch_batch")
    cat = ds + ListDataset([(np.array(-1),)])
    assert isinstance(cat, ConcatDataset) and len(cat) == 11 and cat[10][0] == -1 and cat[-2][0].item() == 90

    n = 103
    big = ListDataset(list(range(n)))
    for lengths in ([50, 50, 3], [0.3, 0.3, 0.4], [0.33, 0.33, 0.34], [1.0], [0.5, 0.5]):
        parts = random_split(big, lengths, generator=suanli.Generator(0))
        sizes = [len(p) for p in parts]
        ref = [len(p) for p in tud.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))]
        assert sizes == ref, (lengths, sizes, ref)
        items = [big[int(i)] for p in parts for i in p.indices]
        assert sorted(items) == list(range(n))          # disjoint and complete
    a = random_split(big, [0.5, 0.5], generator=suanli.Generator(1))
    b = random_split(big, [0.5, 0.5], generator=suanli.Generator(1))
    assert a[0].indices.tolist() == b[0].indices.tolist()
    with pytest.raises(ValueError, match="do not add up") as info:
        random_split(big, [50, 50])
    assert "sum(lengths) == 103" in str(info.value)
    with pytest.raises(ValueError, match="add up to 1"):
        random_split(big, [0.5, 0.6])


# ---------------------------------------------------------------------------------------- IDX / MNIST
def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_idx(path, data: bytes, gz: bool):
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_synthetic(tmp_path, gz):
    imgs = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    p = _write_idx(tmp_path / ("i.gz" if gz else "i"), _idx_bytes(imgs), gz)
    np.testing.assert_array_equal(read_idx(p, expect_magic=0x00000803), imgs)
    floats = np.arange(6, dtype=">f4").reshape(2, 3)
    p = _write_idx(tmp_path / "f", _idx_bytes(floats, 0x0D), gz)
    out = read_idx(p)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, floats)


def test_read_idx_errors(tmp_path):
    imgs = np.zeros((5, 28, 28), np.uint8)
    good = _idx_bytes(imgs)
    cases = {
        "wrong kind": (_idx_bytes(np.zeros(5, np.uint8)), 0x00000803,
                       "magic number 0x00000801, expected 0x00000803 (uint8 with 3 dimensions)"),
        "truncated": (good[:-100], 0x00000803, "truncated: dimensions (5, 28, 28) of uint8 need 3920 data bytes "
                                               "after the 16-byte header, found 3820"),
        "trailing": (good + b"xx", None, "has trailing bytes"),
        "tiny": (b"\x00\x00", None, "only 2 bytes"),
        "bad magic": (b"\x12\x34\x08\x01" + bytes(10), None, "0x12340801 is not an IDX magic number"),
        "bad type": (b"\x00\x00\x07\x01" + bytes(10), None, "is not an IDX magic number"),
        "short header": (b"\x00\x00\x08\x03\x00\x00\x00\x05", None, "truncated header"),
    }
    for name, (data, magic, message) in cases.items():
        for gz in (False, True):
            p = _write_idx(tmp_path / f"{name.replace(' ', '_')}{'.gz' if gz else ''}", data, gz)
            with pytest.raises(IDXError) as info:
                read_idx(p, expect_magic=magic)
            assert message in str(info.value), (name, str(info.value))
            assert str(p) in str(info.value)
    gzdata = gzip.compress(good)
    (tmp_path / "cut.gz").write_bytes(gzdata[: len(gzdata) // 2])
    with pytest.raises(IDXError, match="gzip stream ends early"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "junk.gz").write_bytes(gzdata[:10] + b"\xff" * 40)
    with pytest.raises(IDXError, match="corrupt gzip data"):
        read_idx(tmp_path / "junk.gz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_idx(tmp_path / "missing")


def _fake_mnist(root, n=6, labels=None, gz=True):
    rs = np.random.default_rng(1)
    imgs = rs.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10 if labels is None else labels
    for split, (fi, fl) in {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                            "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}.items():
        _write_idx(root / (fi + (".gz" if gz else "")), _idx_bytes(imgs), gz)
        _write_idx(root / (fl + (".gz" if gz else "")), _idx_bytes(labels), gz)
    return imgs, labels


def test_mnist_dataset_on_synthetic_files(tmp_path):
    imgs, labels = _fake_mnist(tmp_path)
    ds = MNIST(tmp_path, train=False)
    x, y = ds[2]
    assert x.shape == (1, 28, 28) and x.dtype == suanli.float32 and y.dtype == suanli.int64 and y.item() == 2
    ref = (torch.from_numpy(imgs[2]).float().div(255) - 0.1307) / 0.3081      # torchvision's ToTensor+Normalize
    assert _np(x)[0].tobytes() == ref.numpy().tobytes()
    raw = MNIST(tmp_path, normalize=False)
    np.testing.assert_array_equal(_np(raw[0][0])[0], imgs[0].astype(np.float32) / 255)
    xb, yb = next(iter(DataLoader(ds, batch_size=4)))
    assert xb.shape == (4, 1, 28, 28) and _np(yb).tolist() == [0, 1, 2, 3]
    assert _np(xb)[2].tobytes() == _np(x).tobytes()
    allx, ally = ds.arrays()
    assert allx.shape == (6, 1, 28, 28) and ally.dtype == np.int64


def test_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        MNIST(tmp_path)
    msg = str(info.value)
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte[.gz]" in msg and str(tmp_path) in msg
    _fake_mnist(tmp_path, labels=np.array([0, 1, 2, 3, 4, 12], np.uint8))
    with pytest.raises(IDXError, match="labels must be 0..9, found 12"):
        MNIST(tmp_path)
    _fake_mnist(tmp_path, labels=np.zeros(5, np.uint8))
    with pytest.raises(IDXError, match="6 images .* but 5 labels"):
        MNIST(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros((6, 28, 28), np.uint8))))
    with pytest.raises(IDXError, match="expected 0x00000801"):
        MNIST(tmp_path)


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason=f"real MNIST files not present in {MNIST_DIR}")
def test_real_mnist_files():
    labels = read_idx(os.path.join(MNIST_DIR, "train-labels-idx1-ubyte.gz"), expect_magic=0x00000801)
    assert labels.shape == (60000,) and labels.max() == 9
    assert np.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    images = read_idx(os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz"), expect_magic=0x00000803)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    test = MNIST(MNIST_DIR, train=False)
    assert len(test) == 10000
    assert np.bincount(test.targets).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x, _ = test.arrays()
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05


# ---------------------------------------------------------------------------------------- digits
def test_digits():
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == suanli.float32
    assert labels.shape == (1797,) and labels.dtype == suanli.int64
    x = _np(images)
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(_np(labels)).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    train, test = Digits(size=32, split="train"), Digits(size=32, split="test")
    assert len(train) + len(test) == 1797 and train[0][0].shape == (1, 32, 32)
    np.testing.assert_array_equal(_np(test[0][1]), _np(labels)[1437])
    with pytest.raises(ValueError, match="multiple of 8"):
        Digits(size=30)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample_matches_torch_interpolate(mode):
    x = np.random.default_rng(0).random((3, 2, 8, 8), dtype=np.float32)
    ours = _np(upsample(x, 4, mode))
    ref = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=4, mode=mode,
                                          **({"align_corners": False} if mode == "bilinear" else {})).numpy()
    assert ours.shape == (3, 2, 32, 32)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="mode must be"):
        upsample(x, 2, "cubic")


# ---------------------------------------------------------------------------------------- text
def test_char_dataset():
    text = "to be or not to be, that is the question\n" * 5
    ds = CharDataset(text, block_size=8, val_fraction=0.25)
    assert ds.vocab_size == len(set(text)) and ds.itos[ds.stoi["q"]] == "q"
    assert ds.decode(ds.encode(text)) == text
    assert ds.decode(suanli.tensor(ds.encode("be"))) == "be"
    n_train = int(len(text) * 0.75)
    assert len(ds) == n_train - 8
    x, y = ds[5]
    assert ds.decode(x) == text[5:13] and ds.decode(y) == text[6:14] and x.dtype == suanli.int64
    xb, yb = ds.get_batch("val", 16, generator=suanli.Generator(0))
    assert xb.shape == yb.shape == (16, 8)
    np.testing.assert_array_equal(_np(xb)[:, 1:], _np(yb)[:, :-1])
    val_text = text[n_train:]
    for row in _np(xb):
        assert ds.decode(row) in val_text
    xb2, _ = ds.get_batch("val", 16, generator=suanli.Generator(0))
    np.testing.assert_array_equal(_np(xb), _np(xb2))
    batches = list(DataLoader(ds, batch_size=7))                      # fast path == items
    np.testing.assert_array_equal(_np(batches[1][0])[3], _np(ds[10][0]))
    val = CharDataset(text, 8, split="val", val_fraction=0.25)
    assert val.decode(val[0][0]) == val_text[:8]
    with pytest.raises(ValueError, match=r"characters \['Z'\] are not in the vocabulary"):
        ds.encode("Zoo")
    with pytest.raises(ValueError, match="too short for one block"):
        CharDataset("abc", block_size=8)


@pytest.mark.skipif(not os.path.isfile(SHAKESPEARE), reason=f"Tiny Shakespeare not present at {SHAKESPEARE}")
def test_shakespeare():
    text = load_shakespeare(SHAKESPEARE)
    assert len(text) == 1115394 and text.startswith("First Citizen:")
    ds = CharDataset(text, block_size=64)
    assert ds.vocab_size == 65 and ds.decode(ds.encode(text[:1000])) == text[:1000]
    xb, yb = ds.get_batch("train", 32)
    assert xb.shape == (32, 64)


def test_load_shakespeare_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="Tiny Shakespeare"):
        load_shakespeare(tmp_path / "input.txt")
