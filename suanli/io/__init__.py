"""Saving and loading: the safetensors format (our own reader/writer), checkpoints, atomic writes.

>>> import os, tempfile, suanli
>>> from suanli import io
>>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
>>> io.save_file({"a": suanli.arange(4)}, path)
>>> io.load_file(path)["a"].tolist()
[0, 1, 2, 3]
"""
from .atomic import atomic_write
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint_info, save_checkpoint
from .safetensors import (SafetensorsError, TensorInfo, load, load_file, load_numpy, read_header,
                          read_metadata, save, save_file)

__all__ = ["atomic_write", "save_file", "load_file", "load_numpy", "read_metadata", "read_header", "save",
           "load", "TensorInfo", "SafetensorsError", "save_checkpoint", "load_checkpoint",
           "read_checkpoint_info", "CheckpointError"]
