"""Typed training configs: TOML files (stdlib ``tomllib``) loaded into dataclasses, checked key by key.

A config file names its ``recipe``; the recipe picks the dataclass, and every key in the file must be
a field of it with a value of the field's type. Mistakes are reported with the file, the key, the
expected type and what was found -- never silently ignored, never ``exec()``-ed.

>>> from suanli.train.config import loads
>>> cfg = loads('recipe = "babygpt"\\n[optim]\\nlr = 0.01', overrides=["max_steps=5"])
>>> type(cfg).__name__, cfg.optim.lr, cfg.max_steps
('BabyGPTConfig', 0.01, 5)
>>> loads('recipe = "babygpt"\\nmax_step = 5')
Traceback (most recent call last):
...
suanli.train.config.ConfigError: <string>: unknown key 'max_step' for recipe 'babygpt'
  help: did you mean 'max_steps'? ...
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from ..errors import SuanliError

AmpMode = Literal["none", "bf16", "fp16"]


class ConfigError(SuanliError, ValueError):
    """A config file or override that does not fit the recipe's dataclass."""


# --------------------------------------------------------------------------------------------------
# the dataclasses
# --------------------------------------------------------------------------------------------------

@dataclass
class OptimConfig:
    """Optimizer, learning-rate schedule and gradient clipping (the ``[optim]`` table)."""

    name: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    decay_1d: bool = True            # false: no weight decay on biases and norm gains (nanoGPT)
    momentum: float = 0.0            # SGD only
    beta1: float = 0.9               # Adam/AdamW
    beta2: float = 0.999
    grad_clip: float = 0.0           # clip the global gradient norm to this; 0 = off
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0            # linear warm-up from lr/warmup_steps (0 = none)
    min_lr: float = 0.0              # floor of the cosine schedule


@dataclass
class TrainConfig:
    """Settings every recipe shares (the top level of a config file)."""

    recipe: str = ""
    seed: int = 0
    out_dir: str = ""                # default: runs/<recipe>
    epochs: int = 1                  # passes over the training set (epoch-based recipes)
    max_steps: int = 0               # stop after this many optimizer steps; 0 = run all `epochs`
    batch_size: int = 64
    eval_interval: int = 0           # steps between evaluations; 0 = once per epoch (and at the end)
    checkpoint_interval: int = 0     # steps between checkpoints; 0 = once per epoch (and at the end)
    log_interval: int = 10           # steps between progress-bar updates of the loss
    amp: AmpMode = "none"            # mixed precision: "bf16" (autocast) or "fp16" (autocast + GradScaler)
    progress: bool = True            # tqdm progress bar
    plot: bool = True                # write curves.png (needs matplotlib: pip install 'suanli[plot]')
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class MnistLeNetConfig(TrainConfig):
    """``recipe = "mnist-lenet5"``: LeNet-5 on the MNIST IDX files in ``data_dir``."""

    data_dir: str = ""               # folder with train-images-idx3-ubyte[.gz] and the three others
    limit_train: int = 0             # use only the first N training images (quick runs); 0 = all
    limit_test: int = 0


@dataclass
class DigitsLeNetConfig(TrainConfig):
    """``recipe = "digits-lenet5"``: LeNet-5 on the 1797 handwritten 8x8 digits shipped with suanli,
    upsampled to 32x32, 1437 train / 360 test (what ``suanli demo`` trains; no download)."""

    upsample: Literal["bilinear", "nearest"] = "bilinear"   # how 8x8 becomes 32x32
    # "shuffled": 360 test images drawn once with a constant seed (the same whatever `seed` is);
    # "writers": the file's last 360 rows, written by people absent from training (harder: ~92%)
    split: Literal["shuffled", "writers"] = "shuffled"


@dataclass
class GPTModelConfig:
    """The ``[model]`` table of the GPT recipes (vocab_size comes from the data)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = False


@dataclass
class CharGPTConfig(TrainConfig):
    """``recipe = "shakespeare-char-gpt"``: a character-level GPT on a text file (nanoGPT's shakespeare_char)."""

    data_path: str = ""              # the text file, e.g. tinyshakespeare/input.txt
    val_fraction: float = 0.1        # the last part of the text is held out
    eval_iters: int = 20             # batches averaged per evaluation
    sample_chars: int = 200          # characters generated after training (0 = none)
    model: GPTModelConfig = field(default_factory=GPTModelConfig)


@dataclass
class BabyGPTConfig(TrainConfig):
    """``recipe = "babygpt"``: Karpathy's GPT-as-a-Markov-chain experiment (2 tokens, context 3)."""

    sequence: str = "111101111011110"   # training text; every window of 3 predicts the next token
    # Karpathy's settings: 50 full-batch AdamW steps at lr 1e-3, weight decay 0.1, torch seed 1337
    seed: int = 1337
    max_steps: int = 50
    eval_interval: int = 5
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adamw", lr=1e-3, weight_decay=0.1))


RECIPES: dict[str, type[TrainConfig]] = {
    "digits-lenet5": DigitsLeNetConfig,
    "mnist-lenet5": MnistLeNetConfig,
    "shakespeare-char-gpt": CharGPTConfig,
    "babygpt": BabyGPTConfig,
}


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------

def load(path: str | os.PathLike, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read the TOML file at ``path``, apply ``key=value`` overrides, return the recipe's dataclass."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found\n  help: the configs/ folder of the repository "
                          f"has mnist-lenet5.toml, shakespeare-char-gpt.toml and babygpt.toml") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
    return loads(text, overrides, source=path)


def loads(text: str, overrides: Sequence[str] = (), source: str = "<string>") -> TrainConfig:
    """Like :func:`load` for TOML text; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return from_dict(data, overrides, source=source)


def from_dict(data: dict[str, Any], overrides: Sequence[str] = (), source: str = "<dict>") -> TrainConfig:
    """Build the recipe's config from a plain dict (as TOML gives), then apply ``key=value`` overrides."""
    data = _deepcopy(data)
    recipe = data.get("recipe")
    for item in overrides:      # an override may choose the recipe itself
        key, _, value = item.partition("=")
        if key.strip() == "recipe":
            recipe = value.strip()
    if not isinstance(recipe, str) or recipe not in RECIPES:
        got = "no 'recipe' key" if recipe is None else f"recipe = {recipe!r}"
        raise ConfigError(f"{source}: {got}\n  help: set recipe to one of {', '.join(map(repr, RECIPES))}")
    cls = RECIPES[recipe]
    data["recipe"] = recipe
    for item in overrides:
        _apply_override(cls, data, item, source)
    cfg = _build(cls, data, source, prefix="", recipe=recipe)
    if not cfg.out_dir:
        cfg.out_dir = os.path.join("runs", recipe)
    _check_ranges(cfg, source)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a plain dict of TOML-able values (nested tables for nested dataclasses)."""
    return dataclasses.asdict(cfg)


def dumps(cfg: Any) -> str:
    """The config as TOML text that :func:`loads` reads back to an equal config.

    >>> from suanli.train.config import BabyGPTConfig, loads
    >>> cfg = BabyGPTConfig(recipe="babygpt", out_dir="runs/b", max_steps=7)
    >>> loads(dumps(cfg)) == cfg
    True
    """
    top, tables = [], []
    for key, value in to_dict(cfg).items():
        if isinstance(value, dict):
            tables.append(f"\n[{key}]")
            tables.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
        else:
            top.append(f"{key} = {_toml_value(value)}")
    return "\n".join(top + tables) + "\n"


# --------------------------------------------------------------------------------------------------
# internals
# --------------------------------------------------------------------------------------------------

def _deepcopy(d: dict) -> dict:
    return {k: _deepcopy(v) if isinstance(v, dict) else v for k, v in d.items()}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(_toml_value(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {int: "int", float: "float", str: "string", bool: "bool (true or false)"}.get(tp, str(tp))


def _found(value: Any) -> str:
    kind = {bool: "bool", int: "int", float: "float", str: "string", dict: "table", list: "array"}
    shown = repr(value) if isinstance(value, (dict, list)) else _toml_value(value)
    return f"{kind.get(type(value), type(value).__name__)} {shown}"


def _fits(tp: Any, value: Any) -> bool:
    if typing.get_origin(tp) is Literal:
        return value in typing.get_args(tp) and type(value) in {type(a) for a in typing.get_args(tp)}
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _unknown_key(cls: type, key: str, where: str, source: str, recipe: str) -> ConfigError:
    known = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    table = f"[{where}]" if where else "the top level"
    return ConfigError(f"{source}: unknown key {key!r} for recipe {recipe!r}\n"
                       f"  help: {hint}known keys in {table}: {', '.join(known)}")


def _build(cls: type, data: dict[str, Any], source: str, prefix: str, recipe: str) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = prefix + key
        if key not in hints:
            raise _unknown_key(cls, dotted, prefix.rstrip("."), source, recipe)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: key {dotted!r} expects a table [{dotted}], got {_found(value)}")
            kwargs[key] = _build(tp, value, source, dotted + ".", recipe)
        elif not _fits(tp, value):
            hint = ""
            if isinstance(value, str) and tp in (int, float):
                hint = f"\n  help: write numbers without quotes: {key} = {value}"
            raise ConfigError(f"{source}: key {dotted!r} expects {_type_name(tp)}, got {_found(value)}{hint}")
        else:
            kwargs[key] = float(value) if tp is float else value
    return cls(**kwargs)


def _parse_value(tp: Any, raw: str, key: str, where: str) -> Any:
    """Turn the text of a ``--set key=value`` into the field's type (or raise naming the key)."""
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"{where}: key {key!r} is a table; set its fields, e.g. {key}.<field>=value")
    raw = raw.strip()
    unquoted = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'" else raw
    booleans = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    try:
        if typing.get_origin(tp) is Literal and unquoted in typing.get_args(tp):
            return unquoted
        if tp is bool and raw.lower() in booleans:
            return booleans[raw.lower()]
        if tp is int:
            return int(raw.replace("_", ""))
        if tp is float:
            return float(raw.replace("_", ""))
        if tp is str:
            return unquoted
    except ValueError:
        pass
    raise ConfigError(f"{where}: key {key!r} expects {_type_name(tp)}, got {raw!r}")


def _apply_override(cls: type, data: dict[str, Any], item: str, source: str) -> None:
    key, eq, raw = item.partition("=")
    key = key.strip().lstrip("-").replace("-", "_") if key.strip().startswith("--") else key.strip()
    where = f"override {item!r}"
    if not eq or not key:
        raise ConfigError(f"{where}: expected key=value (e.g. --set optim.lr=0.01)")
    parts = key.split(".")
    node_cls, node = cls, data
    for i, part in enumerate(parts):
        hints = _hints(node_cls)
        if part not in hints:
            raise _unknown_key(node_cls, ".".join(parts[:i + 1]), ".".join(parts[:i]), where,
                               data.get("recipe", "?"))
        tp = hints[part]
        if i == len(parts) - 1:
            node[part] = _parse_value(tp, raw, key, where)
        elif dataclasses.is_dataclass(tp):
            node = node.setdefault(part, {})
            node_cls = tp
        else:
            raise ConfigError(f"{where}: key {'.'.join(parts[:i + 1])!r} is {_type_name(tp)}, not a table")


def _check_ranges(cfg: TrainConfig, source: str) -> None:
    def need(ok: bool, key: str, what: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"{source}: key {key!r} must be {what}, got {value!r}")
    need(cfg.epochs >= 1, "epochs", ">= 1", cfg.epochs)
    need(cfg.batch_size >= 1, "batch_size", ">= 1", cfg.batch_size)
    for key in ("max_steps", "eval_interval", "checkpoint_interval", "log_interval"):
        need(getattr(cfg, key) >= 0, key, ">= 0", getattr(cfg, key))
    need(cfg.optim.lr > 0, "optim.lr", "> 0", cfg.optim.lr)
    need(cfg.optim.weight_decay >= 0, "optim.weight_decay", ">= 0", cfg.optim.weight_decay)
    need(cfg.optim.grad_clip >= 0, "optim.grad_clip", ">= 0 (0 = off)", cfg.optim.grad_clip)
    need(cfg.optim.warmup_steps >= 0, "optim.warmup_steps", ">= 0", cfg.optim.warmup_steps)
    if isinstance(cfg, CharGPTConfig):
        need(0 < cfg.val_fraction < 1, "val_fraction", "between 0 and 1", cfg.val_fraction)
        need(cfg.model.n_embd % cfg.model.n_head == 0, "model.n_embd", "divisible by model.n_head",
             cfg.model.n_embd)
    if isinstance(cfg, BabyGPTConfig):
        need(len(cfg.sequence) > 3 and set(cfg.sequence) <= {"0", "1"}, "sequence",
             "a string of 0s and 1s longer than 3", cfg.sequence)
