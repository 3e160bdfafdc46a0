"""Recipes: a config in, a :class:`~suanli.train.trainer.Task` out (and what to report at the end).

| recipe                 | model                       | data                                            |
|------------------------|-----------------------------|-------------------------------------------------|
| ``digits-lenet5``      | LeNet-5                     | the 1797 embedded 8x8 digits, upsampled to 32x32 |
| ``mnist-lenet5``       | LeNet-5                     | MNIST IDX files in ``data_dir``, padded to 32x32 |
| ``shakespeare-char-gpt``| GPT (nanoGPT)              | a text file, one token per character             |
| ``babygpt``            | GPT, 2 tokens, context 3    | every window of ``sequence`` (Karpathy's BabyGPT) |

>>> from suanli.train.recipes import pad_to_32
>>> import numpy as np
>>> pad_to_32(np.zeros((2, 1, 28, 28), np.float32)).shape
(2, 1, 32, 32)
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

import suanli
import suanli.nn.functional as F

from .config import (BabyGPTConfig, CharGPTConfig, ConfigError, DigitsLeNetConfig, MnistLeNetConfig,
                     TrainConfig)
from .trainer import EpochBatches, FullBatch, RandomWindows, Task, Trainer, TrainResult

# MNIST's mean and standard deviation of the pixel values in [0, 1] (the usual normalisation)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


# --------------------------------------------------------------------------------------------------
# LeNet-5 on digits and MNIST
# --------------------------------------------------------------------------------------------------

def _classifier_task(cfg: TrainConfig, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                     y_test: np.ndarray, description: str) -> Task:
    from suanli.data import DataLoader, TensorDataset
    from suanli.models import LeNet5

    suanli.manual_seed(cfg.seed)
    model = LeNet5()
    loader = DataLoader(TensorDataset(suanli.tensor(x_train), suanli.tensor(y_train)),
                        batch_size=cfg.batch_size, shuffle=True, generator=suanli.Generator(cfg.seed + 1))
    test_x, test_y = suanli.tensor(x_test), suanli.tensor(y_test)

    def loss(model: suanli.nn.Module, batch: Any) -> suanli.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluate(model: suanli.nn.Module) -> dict[str, float]:
        return classify(model, test_x, test_y, cfg.batch_size * 8)

    return Task(model=model, batches=EpochBatches(loader), loss=loss, evaluate=evaluate,
                steps_per_epoch=len(loader), description=description, data={"test": (test_x, test_y)})


def classify(model: suanli.nn.Module, x: suanli.Tensor, y: suanli.Tensor, batch_size: int = 512,
             return_logits: bool = False) -> dict[str, Any]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in batches, without recording grads."""
    total_loss, correct, logits_all = 0.0, 0, []
    with suanli.no_grad():
        for i in range(0, len(y), batch_size):
            logits = model(x[i:i + batch_size]).float()
            yb = y[i:i + batch_size]
            total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += int(logits.argmax(dim=1).eq(yb).sum().item())
            if return_logits:
                logits_all.append(logits.numpy())
    out: dict[str, Any] = {"loss": total_loss / len(y), "accuracy": correct / len(y)}
    if return_logits:
        out["logits"] = np.concatenate(logits_all)
    return out


def digits_split(split: str = "shuffled", mode: str = "bilinear"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The embedded digits as LeNet input: ``(x_train, y_train, x_test, y_test)``, x (N, 1, 32, 32).

    Both splits are fixed, so ``--seed`` changes the training, never the held-out images.
    ``"shuffled"`` holds out 360 images picked by a permutation with a constant seed; ``"writers"`` is
    :class:`suanli.data.Digits`' split (the file's last 360 rows). The rows are grouped by writer, so
    "writers" tests on unseen handwriting and is markedly harder for a small training set (LeNet-5
    reaches ~92% there, ~98% on "shuffled"). Pixels are standardised with the training set's mean and
    standard deviation.
    """
    from suanli.data import load_digits, upsample

    images, labels = load_digits()                                   # (1797, 1, 8, 8) in [0, 1], (1797,)
    x = upsample(images, 4, mode).numpy()                            # (1797, 1, 32, 32)
    y = labels.numpy()
    if split == "writers":
        train, test = np.arange(1437), np.arange(1437, len(y))
    elif split == "shuffled":
        order = np.random.default_rng(20230801).permutation(len(y))
        train, test = np.sort(order[360:]), np.sort(order[:360])
    else:
        raise ValueError(f"digits_split: split must be 'shuffled' or 'writers', got {split!r}")
    mean, std = x[train].mean(), x[train].std()
    return (x[train] - mean) / std, y[train], (x[test] - mean) / std, y[test]


def digits_task(cfg: DigitsLeNetConfig) -> Task:
    x_train, y_train, x_test, y_test = digits_split(cfg.split, cfg.upsample)
    return _classifier_task(cfg, x_train, y_train, x_test, y_test,
                            f"LeNet-5 on handwritten digits ({len(y_train)} train / {len(y_test)} test, "
                            f"8x8 upsampled to 32x32)")


def mnist_task(cfg: MnistLeNetConfig) -> Task:
    from suanli.data import MNIST

    if not cfg.data_dir:
        raise ConfigError("recipe 'mnist-lenet5' needs data_dir: the folder with the four MNIST IDX files "
                          "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                          "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])\n"
                          "  help: add data_dir = \"DIR\" to the config or pass --set data_dir=DIR")
    if not os.path.isdir(cfg.data_dir):
        raise FileNotFoundError(f"data_dir {cfg.data_dir!r}: no such directory (expected a folder with "
                                f"the four MNIST IDX files, e.g. train-images-idx3-ubyte.gz)")
    xs, ys = MNIST(cfg.data_dir, train=True).arrays()             # normalised (N, 1, 28, 28), (N,)
    xt, yt = MNIST(cfg.data_dir, train=False).arrays()
    if cfg.limit_train:
        xs, ys = xs[:cfg.limit_train], ys[:cfg.limit_train]
    if cfg.limit_test:
        xt, yt = xt[:cfg.limit_test], yt[:cfg.limit_test]
    return _classifier_task(cfg, pad_to_32(xs), ys, pad_to_32(xt), yt,
                            f"LeNet-5 on MNIST ({len(ys)} train / {len(yt)} test, padded to 32x32)")


def pad_to_32(x: np.ndarray) -> np.ndarray:
    """(N, 1, 28, 28) normalised MNIST -> (N, 1, 32, 32), the border filled with normalised black."""
    black = (np.float32(0) - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)   # as the pixels were computed
    out = np.full((len(x), 1, 32, 32), black, np.float32)
    out[:, :, 2:30, 2:30] = x
    return out


# --------------------------------------------------------------------------------------------------
# GPTs
# --------------------------------------------------------------------------------------------------

def char_gpt_task(cfg: CharGPTConfig) -> Task:
    from suanli.models import GPT, GPTConfig

    if not cfg.data_path:
        raise ConfigError("recipe 'shakespeare-char-gpt' needs data_path: a text file to learn, e.g. "
                          "tinyshakespeare/input.txt\n  help: --set data_path=FILE")
    if not os.path.isfile(cfg.data_path):
        raise FileNotFoundError(f"data_path {cfg.data_path!r}: no such file (expected a UTF-8 text file)")
    with open(cfg.data_path, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    tokens = np.array([stoi[c] for c in text], dtype=np.int64)
    n_val = int(len(tokens) * cfg.val_fraction)
    train_tokens, val_tokens = tokens[:-n_val], tokens[-n_val:]
    m = cfg.model
    suanli.manual_seed(cfg.seed)
    model = GPT(GPTConfig(block_size=m.block_size, vocab_size=len(chars), n_layer=m.n_layer,
                          n_head=m.n_head, n_embd=m.n_embd, dropout=m.dropout, bias=m.bias))
    model.itos = chars          # kept for sampling at the end (not part of the state dict)

    def loss(model: suanli.nn.Module, batch: Any) -> suanli.Tensor:
        x, y = batch
        _, loss = model(x, y)
        return loss

    def evaluate(model: suanli.nn.Module) -> dict[str, float]:
        val = RandomWindows(val_tokens, m.block_size, cfg.batch_size, seed=cfg.seed + 2)  # same batches each time
        losses = [model(*val.next())[1].item() for _ in range(cfg.eval_iters)]
        return {"loss": float(np.mean(losses))}

    return Task(model=model, batches=RandomWindows(train_tokens, m.block_size, cfg.batch_size, cfg.seed + 1),
                loss=loss, evaluate=evaluate, steps_per_epoch=None,
                description=f"char GPT {m.n_layer}x{m.n_embd} on {os.path.basename(cfg.data_path)} "
                            f"({len(chars)} symbols)")


def babygpt_data(sequence: str, context: int = 3) -> tuple[suanli.Tensor, suanli.Tensor]:
    """Every (window, next token) pair of a 0/1 string: the training set of Karpathy's BabyGPT.

    >>> x, y = babygpt_data("111101111011110")
    >>> x.shape, x[0].tolist(), y[0].item()
    ((12, 3), [1, 1, 1], 1)
    """
    seq = [int(c) for c in sequence]
    xs = [seq[i:i + context] for i in range(len(seq) - context)]
    ys = [seq[i + context] for i in range(len(seq) - context)]
    return suanli.tensor(xs, dtype=suanli.int64), suanli.tensor(ys, dtype=suanli.int64)


def babygpt_task(cfg: BabyGPTConfig) -> Task:
    from suanli.models import GPT, GPTConfig

    suanli.manual_seed(cfg.seed)
    model = GPT(GPTConfig.babygpt())
    x, y = babygpt_data(cfg.sequence, model.config.block_size)

    def loss(model: suanli.nn.Module, batch: Any) -> suanli.Tensor:
        xb, yb = batch
        return F.cross_entropy(last_logits(model, xb), yb)

    def evaluate(model: suanli.nn.Module) -> dict[str, float]:
        return {"loss": F.cross_entropy(last_logits(model, x), y).item()}

    return Task(model=model, batches=FullBatch(x, y), loss=loss, evaluate=evaluate, steps_per_epoch=None,
                description=f"BabyGPT on {cfg.sequence!r} ({len(y)} windows of 3)")


def last_logits(model: suanli.nn.Module, idx: suanli.Tensor) -> suanli.Tensor:
    """The logits for the token after the last position: (B, T) -> (B, vocab)."""
    logits, _ = model(idx)
    return logits[:, -1, :] if logits.ndim == 3 else logits     # (B, T or 1, V) -> (B, V)


def transition_probabilities(model: suanli.nn.Module, context: int = 3) -> dict[str, tuple[float, float]]:
    """P(next token | state) for every 0/1 state of length ``context``: ``{"010": (p0, p1), ...}``."""
    states = [format(i, f"0{context}b") for i in range(2 ** context)]
    idx = suanli.tensor([[int(c) for c in s] for s in states], dtype=suanli.int64)
    model.eval()
    with suanli.no_grad():
        probs = F.softmax(last_logits(model, idx).float(), dim=-1).numpy().astype(np.float64)
    return {s: (float(p[0]), float(p[1])) for s, p in zip(states, probs)}


# --------------------------------------------------------------------------------------------------
# what to do after training
# --------------------------------------------------------------------------------------------------

def _finish_babygpt(cfg: BabyGPTConfig, trainer: Trainer, result: TrainResult) -> None:
    probs = transition_probabilities(trainer.model)
    result.extras["probabilities"] = probs
    seen = sorted({cfg.sequence[i:i + 3] for i in range(len(cfg.sequence) - 3)})
    result.extras["training_states"] = seen
    from suanli import plot
    try:
        result.files["graph"] = plot.plot_markov_chain(
            probs, trainer.path("babygpt.png"), highlight=seen,
            title=f"BabyGPT after {result.steps} steps on {cfg.sequence!r} "
                  f"(shaded: states seen in training)")
    except plot.PlotUnavailable as exc:
        trainer._log(f"note: no babygpt.png -- {exc}")


def _finish_char_gpt(cfg: CharGPTConfig, trainer: Trainer, result: TrainResult) -> None:
    if not cfg.sample_chars:
        return
    model = trainer.model
    itos = model.itos
    start = suanli.tensor([[itos.index("\n") if "\n" in itos else 0]], dtype=suanli.int64)
    model.eval()
    with suanli.no_grad():
        out = model.generate(start, cfg.sample_chars, temperature=0.8, top_k=10)
    result.extras["sample"] = "".join(itos[i] for i in out[0].tolist())


TASKS: dict[str, Callable[[Any], Task]] = {
    "digits-lenet5": digits_task,
    "mnist-lenet5": mnist_task,
    "shakespeare-char-gpt": char_gpt_task,
    "babygpt": babygpt_task,
}
FINISH: dict[str, Callable[[Any, Trainer, TrainResult], None]] = {
    "babygpt": _finish_babygpt,
    "shakespeare-char-gpt": _finish_char_gpt,
}


def train(cfg: TrainConfig, resume: str | None = None, stop_after: int | None = None,
          log: Callable[[str], None] = print) -> tuple[Trainer, TrainResult]:
    """Build the recipe's task, train it, run the recipe's finishing step; returns (trainer, result)."""
    task = TASKS[cfg.recipe](cfg)
    trainer = Trainer(cfg, task, log=log)
    result = trainer.fit(resume=resume, stop_after=stop_after)
    if not result.stopped_early and cfg.recipe in FINISH:
        FINISH[cfg.recipe](cfg, trainer, result)
    return trainer, result
