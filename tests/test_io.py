"""suanli.io: safetensors reader/writer (round trips, interop with the reference library, corrupt files),
atomic writes (including a writer killed with SIGKILL), and checkpoints."""
from __future__ import annotations

import json
import math
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
from collections import OrderedDict

import ml_dtypes
import numpy as np
import pytest

import suanli
from suanli.io import (CheckpointError, SafetensorsError, atomic_write, load, load_checkpoint, load_file,
                       load_numpy, read_checkpoint_info, read_header, read_metadata, save, save_checkpoint,
                       save_file)
from suanli.io import safetensors as st
from suanli.io.atomic import temp_prefix

safetensors = pytest.importorskip("safetensors")
import safetensors.numpy  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(), (0,), (5,), (2, 3, 4), (0, 3), (1, 1, 1), (3, 0, 2)]


def _random_array(name: str, shape: tuple, seed: int = 0) -> np.ndarray:
    dtype = st.DTYPES[name]
    n = int(np.prod(shape, dtype=np.int64))
    rs = np.random.default_rng(seed)
    if name == "BOOL":
        return rs.integers(0, 2, size=shape).astype(bool)
    raw = rs.integers(0, 256, size=n * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)      # every bit pattern, NaNs included


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and _bits(a) == _bits(b)


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", sorted(st.DTYPES))
def test_round_trip_every_dtype_and_shape(tmp_path, name):
    arrays = {f"t{i}": _random_array(name, shape, i) for i, shape in enumerate(SHAPES)}
    path = tmp_path / "x.safetensors"
    save_file(arrays, path)
    back = load_numpy(path)
    assert set(back) == set(arrays)
    for k, a in arrays.items():
        assert _same(a, back[k]), (name, k)
        assert back[k].flags.c_contiguous and back[k].flags.writeable and back[k].flags.aligned
    assert _same(load(save(arrays), as_numpy=True)["t3"], arrays["t3"])


def test_load_file_gives_tensors_of_each_suanli_dtype(tmp_path):
    tensors = {str(d): suanli.ones(2, 3, dtype=d) for d in suanli.dtypes.ALL}
    tensors["grad"] = suanli.randn(4, requires_grad=True)
    save_file(tensors, tmp_path / "t.safetensors")
    back = load_file(tmp_path / "t.safetensors")
    for k, t in tensors.items():
        assert isinstance(back[k], suanli.Tensor)
        assert back[k].dtype == t.dtype and back[k].shape == t.shape
        assert _same(back[k].numpy(), t.detach().numpy())


def test_non_contiguous_and_big_endian_inputs(tmp_path):
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    arrays = {"t": a.T, "be": np.arange(5, dtype=">i4"), "fort": np.asfortranarray(a)}
    save_file(arrays, tmp_path / "x.safetensors")
    back = load_numpy(tmp_path / "x.safetensors")
    np.testing.assert_array_equal(back["t"], a.T)
    np.testing.assert_array_equal(back["be"], np.arange(5))
    assert back["be"].dtype == np.int32 and back["be"].dtype.isnative
    np.testing.assert_array_equal(back["fort"], a)


def test_metadata_and_header(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"a": np.zeros((2, 2), np.float16)}, path, metadata={"k": "v", "ünï": "cødé"})
    assert read_metadata(path) == {"k": "v", "ünï": "cødé"}
    meta, infos = read_header(path)
    assert infos["a"] == st.TensorInfo("F16", (2, 2), 0, 8)
    save_file({"a": np.zeros(1)}, path)
    assert read_metadata(path) == {}
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert n % 8 == 0 and path.read_bytes()[8 + n - 1:8 + n] in (b"}", b" ")


# ------------------------------------------------------------------------------------------ interop
def _torch_view(a: np.ndarray) -> torch.Tensor:
    """The same bits as a torch tensor (numpy has no bf16/f8 that torch accepts)."""
    special = {np.dtype(ml_dtypes.bfloat16): (np.int16, torch.bfloat16),
               np.dtype(ml_dtypes.float8_e4m3fn): (np.int8, torch.float8_e4m3fn),
               np.dtype(ml_dtypes.float8_e5m2): (np.int8, torch.float8_e5m2)}
    if a.dtype in special:
        raw, tdt = special[a.dtype]
        return torch.from_numpy(a.view(raw).copy()).view(tdt)
    return torch.from_numpy(a.copy())


def _from_torch(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _mixed_arrays(names=None) -> dict[str, np.ndarray]:
    names = names or sorted(st.DTYPES)
    out = {}
    for i, name in enumerate(names):
        out[f"{name.lower()}_{i}"] = _random_array(name, SHAPES[i % len(SHAPES)], i)
        out[f"z{i}"] = _random_array(name, (3, 2), 100 + i)
    return out


def test_our_files_are_byte_identical_to_the_reference_writer(tmp_path):
    arrays = _mixed_arrays()
    ours = save(arrays, metadata={"format": "pt"})
    ref = safetensors.torch.save({k: _torch_view(a) for k, a in arrays.items()}, metadata={"format": "pt"})
    assert ours == ref
    plain = {k: a for k, a in arrays.items() if a.dtype.type.__module__ == "numpy"}
    assert save(plain) == safetensors.numpy.save(plain)


def test_reference_library_reads_our_files(tmp_path):
    arrays = _mixed_arrays()
    path = tmp_path / "ours.safetensors"
    save_file(arrays, path, metadata={"who": "suanli"})
    back = safetensors.torch.load_file(str(path))
    assert set(back) == set(arrays)
    for k, a in arrays.items():
        assert tuple(back[k].shape) == a.shape and _from_torch(back[k]) == _bits(a), k
    numpy_names = [k for k, a in arrays.items() if a.dtype.type.__module__ == "numpy"]  # no bf16/f8
    plain = tmp_path / "plain.safetensors"
    save_file({k: arrays[k] for k in numpy_names}, plain)
    np_back = safetensors.numpy.load_file(str(plain))
    for k in numpy_names:
        assert _same(np_back[k], arrays[k])
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"who": "suanli"}
        bf = next(k for k in arrays if k.startswith("bf16"))
        assert _from_torch(f.get_tensor(bf)) == _bits(arrays[bf])


def test_we_read_reference_files(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"bf16": torch.randn(3, 5, generator=g).to(torch.bfloat16), "f16": torch.randn(7, generator=g).half(),
               "f32": torch.randn(2, 2, generator=g), "f64": torch.randn(4, generator=g).double(),
               "i64": torch.arange(-3, 3), "bool": torch.tensor([True, False, True]), "scalar": torch.tensor(2.5),
               "empty": torch.zeros(0, 4), "u8": torch.arange(256, dtype=torch.uint8),
               "f8": torch.randn(6, generator=g).to(torch.float8_e4m3fn)}
    path = tmp_path / "ref.safetensors"
    safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt"})
    back = load_numpy(path)
    assert read_metadata(path) == {"format": "pt"}
    for k, t in tensors.items():
        assert back[k].shape == tuple(t.shape)
        assert _bits(back[k]) == _from_torch(t), k
    assert back["bf16"].dtype == suanli.bfloat16 and back["scalar"].item() == 2.5
    np.testing.assert_allclose(back["bf16"].astype(np.float32), tensors["bf16"].float().numpy())
    with pytest.raises(SafetensorsError, match="'f8' has dtype F8_E4M3, which suanli tensors do not support"):
        load_file(path)                           # as Tensors: f8 has no suanli dtype
    del tensors["f8"]
    safetensors.torch.save_file(tensors, str(path))
    assert load_file(path)["bf16"].dtype == suanli.bfloat16
    np_path = tmp_path / "np.safetensors"
    safetensors.numpy.save_file({"a": np.arange(6.0).reshape(2, 3)}, str(np_path))
    np.testing.assert_array_equal(load_numpy(np_path)["a"], np.arange(6.0).reshape(2, 3))


# ------------------------------------------------------------------------------------------ corrupt files
def _raw(tmp_path, header, data: bytes = b"", *, pad: bool = True, name: str = "bad.safetensors"):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    path = tmp_path / name
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


CORRUPT = {
    "too short": (lambda p: _write(p, b"\x01\x02\x03"), "file too short (3 bytes)"),
    "empty": (lambda p: _write(p, b""), "file too short (0 bytes)"),
    "header beyond file": (lambda p: _write(p, struct.pack("<Q", 1000) + b"{}"), "header length 1000 exceeds the file size"),
    "huge header": (lambda p: _write(p, struct.pack("<Q", 2 ** 63) + b"{}" * 8), "exceeds the file size"),
    "not json": (lambda p: _raw(p, b"{not json"), "header is not valid JSON"),
    "deep nesting": (lambda p: _raw(p, b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"), "nested too deeply"),
    "not an object": (lambda p: _raw(p, b"[1, 2]"), "does not start with '{'"),
    "not utf8": (lambda p: _raw(p, b'{"\xff": 1}'), "header is not valid UTF-8"),
    "unknown dtype": (lambda p: _raw(p, {"x": _entry("F128", (1,), (0, 16))}, bytes(16)), "unknown dtype 'F128'"),
    "shape mismatch": (lambda p: _raw(p, {"x": _entry("F32", (2, 3), (0, 8))}, bytes(8)),
                       "shape [2, 3] x F32 (4 bytes each) needs 24 bytes, but data_offsets [0, 8] span 8"),
    "negative dim": (lambda p: _raw(p, {"x": _entry("F32", (-2,), (0, 8))}, bytes(8)), "shape must be a list of non-negative ints"),
    "bad offsets": (lambda p: _raw(p, {"x": _entry("F32", (2,), (8, 0))}, bytes(8)), "data_offsets must be [begin, end]"),
    "past the end": (lambda p: _raw(p, {"x": _entry("F32", (4,), (0, 16))}, bytes(8)), "run past the end of the data buffer (8 bytes)"),
    "overlap": (lambda p: _raw(p, {"a": _entry("F32", (2,), (0, 8)), "b": _entry("F32", (2,), (4, 12))}, bytes(12)),
                "overlap the previous tensor"),
    "gap": (lambda p: _raw(p, {"a": _entry("F32", (1,), (0, 4)), "b": _entry("F32", (1,), (8, 12))}, bytes(12)),
            "leave a gap of 4 unused bytes"),
    "trailing bytes": (lambda p: _raw(p, {"a": _entry("F32", (2,), (0, 8))}, bytes(12)), "4 trailing bytes belong to no tensor"),
    "duplicate name": (lambda p: _raw(p, b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                         b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', bytes(1)),
                       "names ['a'] more than once"),
    "bad metadata": (lambda p: _raw(p, {"__metadata__": {"k": 1}}), "'__metadata__' must be an object mapping str -> str"),
    "bad entry": (lambda p: _raw(p, {"x": {"dtype": "F32"}}), "header entry must be an object with 'dtype'"),
    "bool bytes": (lambda p: _raw(p, {"x": _entry("BOOL", (2,), (0, 2))}, b"\x01\x07"), "BOOL bytes must be 0 or 1"),
}


def _write(tmp_path, data: bytes):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_files_give_clear_errors(tmp_path, case):
    make, message = CORRUPT[case]
    path = make(tmp_path)
    with pytest.raises(SafetensorsError) as info:
        load_numpy(path)
    text = str(info.value)
    assert message in text, text
    assert str(path) in text                     # the error names the file
    if case not in ("bool bytes",):
        with pytest.raises(SafetensorsError):
            read_metadata(path)
    with pytest.raises(SafetensorsError):        # bytes variant reports "<bytes>"
        load(path.read_bytes())


def test_truncated_real_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": np.ones((64, 64), np.float32), "b": np.zeros(10, np.int64)}, path)
    data = path.read_bytes()
    for cut in (4, 40, len(data) - 1, len(data) - 5000):
        path.write_bytes(data[:cut])
        with pytest.raises(SafetensorsError, match="truncated|too short"):
            load_file(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_file(tmp_path / "nope.safetensors")


def test_reference_rejects_what_we_reject(tmp_path):
    """Our checks are not stricter than the format: the reference library rejects these too."""
    for case in ("overlap", "gap", "trailing bytes", "shape mismatch", "unknown dtype", "header beyond file"):
        path = CORRUPT[case][0](tmp_path)
        with pytest.raises(Exception):
            safetensors.numpy.load_file(str(path))


def test_write_errors(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(SafetensorsError, match="names must be str"):
        save_file({1: np.zeros(1)}, path)
    with pytest.raises(SafetensorsError, match="'__metadata__' is reserved"):
        save_file({"__metadata__": np.zeros(1)}, path)
    with pytest.raises(SafetensorsError, match="dtype complex64, which safetensors cannot store"):
        save_file({"c": np.zeros(2, np.complex64)}, path)
    with pytest.raises(SafetensorsError, match="must be a suanli.Tensor or a NumPy array, got list"):
        save_file({"l": [1, 2]}, path)
    with pytest.raises(SafetensorsError, match="metadata must map str -> str"):
        save_file({"a": np.zeros(1)}, path, metadata={"epoch": 3})
    assert not path.exists() and os.listdir(tmp_path) == []   # nothing written, no temp files


# ------------------------------------------------------------------------------------------ atomic writes
def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "f.bin"
    with atomic_write(path) as f:
        f.write(b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(ZeroDivisionError):
        with atomic_write(path) as f:
            f.write(b"partial")
            1 / 0
    assert path.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_atomic_write_modes_and_permissions(tmp_path):
    path = tmp_path / "t.txt"
    with atomic_write(path, "w") as f:
        f.write("héllo")
    assert path.read_text(encoding="utf-8") == "héllo"
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask
    os.chmod(path, 0o640)
    with atomic_write(path, "wb", fsync=False) as f:
        f.write(b"x")
    assert os.stat(path).st_mode & 0o777 == 0o640
    with pytest.raises(ValueError, match="mode must be one of"):
        with atomic_write(path, "a"):
            pass
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_write(tmp_path / "nodir" / "x"):
            pass


CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from suanli.io import save_checkpoint
    from suanli.io import safetensors as st
    path, mode = sys.argv[1], sys.argv[2]

    def model(k):
        return {f"w{i}": np.full(1 << 19, k, np.float32) for i in range(8)}   # 16 MiB

    if mode == "mid-write":
        original, calls = st._write_tensor_bytes, [0]
        def slow(f, a):
            calls[0] += 1
            if calls[0] == 4:                         # half of the 4th tensor on disk, then hang
                f.write(a.reshape(-1).view(np.uint8).data[: a.nbytes // 2]); f.flush()
                print("READY", flush=True); time.sleep(600)
            original(f, a)
        st._write_tensor_bytes = slow
    elif mode == "before-rename":
        def hang(src, dst):                           # complete temp file, rename not yet done
            print("READY", flush=True); time.sleep(600)
        os.replace = hang
    if mode == "loop":
        k = 2
        print("READY", flush=True)
        while True:
            save_checkpoint(path, model=model(k), step=k, rng=False)
            k += 1
    save_checkpoint(path, model=model(2), step=2, rng=False)
""")


@pytest.mark.parametrize("mode", ["mid-write", "before-rename", "loop"])
def test_checkpoint_survives_a_killed_writer(tmp_path, mode):
    path = tmp_path / "ckpt.safetensors"
    good = {f"w{i}": np.full(1 << 19, 1, np.float32) for i in range(8)}
    save_checkpoint(path, model=good, step=1, rng=False)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.stderr.read()
        if mode == "loop":                      # kill at some moment of a busy save loop
            import time
            time.sleep(0.3 + random.Random(0).random() * 0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    info = read_checkpoint_info(path)          # still a complete, valid checkpoint
    step = info["step"]
    if mode == "loop":
        assert step >= 1
    else:
        assert step == 1
        stale = [f for f in os.listdir(tmp_path) if f.startswith(temp_prefix(path))]
        assert len(stale) == 1                 # the killed writer's temp file, never the target
    for v in info["model"].values():
        assert (np.asarray(v) == step).all()   # never a mix of two checkpoints
    # the next save is not confused by the stale temp file
    save_checkpoint(path, model={"w0": np.zeros(3, np.float32)}, step=99, rng=False)
    assert read_checkpoint_info(path)["step"] == 99


# ------------------------------------------------------------------------------------------ checkpoints
class StandIn:
    """Anything with state_dict()/load_state_dict() works (duck typing)."""

    def __init__(self, state):
        self.state = state
        self.loaded = None

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.loaded = state


def _optimizer_state():
    g = suanli.Generator(1)
    return {"state": {0: {"step": suanli.tensor(3.0), "exp_avg": suanli.randn(4, 3, generator=g),
                          "exp_avg_sq": suanli.rand(4, 3, generator=g)},
                      1: {"step": suanli.tensor(3.0), "exp_avg": suanli.randn(4, generator=g),
                          "exp_avg_sq": suanli.rand(4, generator=g), "max_sq": np.float32(0.5)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01,
                              "amsgrad": False, "foreach": None, "params": [0, 1], "name": "all",
                              "initial_lr": float("inf"), "nan": float("nan")}]}


def _assert_same_tree(a, b):
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (type(a), type(b))
    if isinstance(a, suanli.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and _bits(a.numpy()) == _bits(b.numpy())
    elif isinstance(a, np.ndarray):
        assert _same(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same_tree(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b and type(a) is type(b)


class TinyModel:
    """Stand-in with torch's model interface (state_dict / load_state_dict(strict=...))."""

    def __init__(self, seed):
        g = suanli.Generator(seed)
        self.params = OrderedDict(w=suanli.randn(4, 3, generator=g), b=suanli.zeros(4), steps=suanli.tensor(7))

    def state_dict(self):
        return OrderedDict((k, v.detach()) for k, v in self.params.items())

    def load_state_dict(self, state, strict=True):
        if strict and set(state) != set(self.params):
            raise KeyError(f"keys differ: {sorted(state)}")
        for k, v in state.items():
            self.params[k] = suanli.tensor(v)


def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "c.safetensors"
    model, opt = TinyModel(0), StandIn(_optimizer_state())
    sched = StandIn({"last_epoch": 5, "_last_lr": [0.1, 0.2], "base_lrs": [0.1, 0.2], "verbose": False})
    scaler = StandIn({"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 3, "found_inf": suanli.tensor(0.0)})
    meta = {"run": "test", "cfg": {"layers": [1, 2], "tuple": (1, "a")}, "best": suanli.tensor([0.5])}
    save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, scaler=scaler, epoch=3, step=120,
                    metadata=meta)
    model2, opt2, sched2, scaler2 = TinyModel(1), StandIn(None), StandIn(None), StandIn(None)
    out = load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2, scaler=scaler2)
    assert out["epoch"] == 3 and out["step"] == 120 and out["format_version"] == 1
    _assert_same_tree(meta, out["metadata"])
    _assert_same_tree(dict(model.state_dict()), dict(model2.state_dict()))
    _assert_same_tree(opt.state, opt2.loaded)
    assert list(opt2.loaded["state"]) == [0, 1]                        # int keys come back as ints
    assert opt2.loaded["param_groups"][0]["betas"] == (0.9, 0.999)     # tuples as tuples
    _assert_same_tree(sched.state, sched2.loaded)
    _assert_same_tree(scaler.state, scaler2.loaded)
    # the file is plain safetensors with readable tensor names
    names = set(safetensors.numpy.load_file(str(path)))
    assert {"model.w", "model.b", "model.steps", "optimizer.state.0.exp_avg", "optimizer.state.1.exp_avg_sq",
            "scaler.found_inf", "metadata.best"} <= names
    meta_raw = read_metadata(path)
    assert meta_raw["suanli.format"] == "suanli.checkpoint"
    json.loads(meta_raw["optimizer"])                                   # strict JSON (no NaN tokens)
    assert "NaN" not in meta_raw["optimizer"]


def test_checkpoint_with_suanli_nn_model(tmp_path):
    nn = suanli.nn
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model=model, step=1)
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    out = load_checkpoint(path, model=fresh)
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert _same(a.numpy(), b.numpy()), k
    assert not (out["model_keys"].missing_keys or out["model_keys"].unexpected_keys)
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5))
    with pytest.raises(suanli.SuanliError, match="size mismatch"):
        load_checkpoint(path, model=other)
    out = load_checkpoint(path, model=nn.Sequential(nn.Linear(3, 4)), strict=False)
    assert out["model_keys"].unexpected_keys == ["2.weight", "2.bias"]


def test_checkpoint_restores_rng_states(tmp_path):
    path = tmp_path / "r.safetensors"
    suanli.manual_seed(123)
    random.seed(5)
    np.random.seed(7)
    suanli.rand(3), random.random(), np.random.rand(2), np.random.randn()    # odd gauss state
    save_checkpoint(path, step=0)
    expect = (suanli.rand(5).numpy(), [random.random() for _ in range(3)], np.random.randn(3))
    suanli.manual_seed(999)
    random.seed(1)
    np.random.seed(1)
    out = load_checkpoint(path)
    assert out["rng_restored"]
    got = (suanli.rand(5).numpy(), [random.random() for _ in range(3)], np.random.randn(3))
    np.testing.assert_array_equal(expect[0], got[0])
    assert expect[1] == got[1]
    np.testing.assert_array_equal(expect[2], got[2])
    suanli.manual_seed(999)
    load_checkpoint(path, restore_rng=False)
    assert not np.array_equal(suanli.rand(5).numpy(), expect[0])


def test_checkpoint_load_errors(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"a": np.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a suanli checkpoint"):
        load_checkpoint(plain)

    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model={"w": suanli.ones(2)}, step=3)
    arrays, meta = load_numpy(path), read_metadata(path)

    def rewrite(**changes):
        m = dict(meta, **changes)
        for k in [k for k, v in m.items() if v is None]:
            del m[k]
        save_file(arrays, path, metadata=m)

    rewrite(**{"suanli.format_version": "2"})
    with pytest.raises(CheckpointError, match="format version 2, but this suanli reads version 1"):
        load_checkpoint(path)
    rewrite(**{"step": None})
    with pytest.raises(CheckpointError, match=r"sections \['step'\] are listed but missing"):
        load_checkpoint(path)
    rewrite(model='{"w": {"__tensor__": "model.nope"}}')
    with pytest.raises(CheckpointError, match="refers to tensor 'model.nope', which is not in the file"):
        load_checkpoint(path)
    rewrite(model="{broken")
    with pytest.raises(CheckpointError, match="section 'model' is not valid JSON"):
        load_checkpoint(path)
    rewrite()
    with pytest.raises(CheckpointError, match="has no 'optimizer' section"):
        load_checkpoint(path, model=StandIn(None), optimizer=StandIn(None))
    out = load_checkpoint(path, optimizer=StandIn(None), strict=False)
    assert out["skipped"] == ["optimizer"]
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="must have a load_state_dict"):
        path.write_bytes(data)
        load_checkpoint(path, model=object())


def test_checkpoint_save_errors(tmp_path):
    path = tmp_path / "c.safetensors"
    with pytest.raises(CheckpointError, match="cannot store 'scheduler.lr_lambda' of type function"):
        save_checkpoint(path, scheduler={"lr_lambda": lambda e: 1.0})
    with pytest.raises(CheckpointError, match="must have a state_dict"):
        save_checkpoint(path, optimizer=object())
    assert not path.exists()


def test_checkpoint_tricky_keys(tmp_path):
    """Keys that collide after flattening, reserved tag names, non-str keys."""
    path = tmp_path / "k.safetensors"
    state = {"a.b": suanli.ones(1), "a": {"b": suanli.zeros(1)}, "__tensor__": 5,
             (1, 2): "tuple key", 3.5: np.arange(3), None: [suanli.ones(2), (np.int64(4), True)]}
    save_checkpoint(path, extra={"thing": state}, rng=False)
    out = load_checkpoint(path)
    _assert_same_tree(state, out["extra"]["thing"])
