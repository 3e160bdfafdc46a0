"""A small training loop: steps, evaluation, checkpoints (resumable to the bit), curves.

A recipe (:mod:`suanli.train.recipes`) turns a config into a :class:`Task` -- the model, a stream of
batches, a loss and an evaluation -- and :class:`Trainer` runs it::

    for step in 1..total:
        batch = stream.next()                  # shuffled minibatches, epoch after epoch
        with autocast: loss = task.loss(model, batch)
        backward (scaled for fp16), clip, optimizer step, scheduler step
        every eval_interval:       evaluate, print a line, record the curve
        every checkpoint_interval: save model + optimizer + scheduler + scaler + RNG + stream position

Everything that decides the next step is in the checkpoint, so training that stops after a checkpoint
and resumes from it ends with the same weights, bit for bit, as training that never stopped.

>>> from suanli.train.trainer import FullBatch
>>> import suanli
>>> s = FullBatch(suanli.arange(3), suanli.arange(3))
>>> s.next()[0].tolist(), s.state_dict()
([0, 1, 2], {'epoch': 0, 'index': 1})
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np

import suanli

from .config import TrainConfig, dumps, to_dict


# --------------------------------------------------------------------------------------------------
# batch streams: where the next batch comes from, and how to pick up where a checkpoint left off
# --------------------------------------------------------------------------------------------------

class BatchStream(Protocol):
    """An endless source of batches whose position can be saved and restored."""

    epoch: int

    def next(self) -> Any: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class EpochBatches:
    """Minibatches from a :class:`suanli.data.DataLoader`, epoch after epoch.

    The loader shuffles with its own seeded generator and can save where it is in an epoch
    (``DataLoader.state_dict``), so a resumed run continues the same epoch with the same order.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.epoch = 0
        self._it: Iterator | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def next(self) -> Any:
        if self._it is None:
            self._it = iter(self.loader)
        try:
            return next(self._it)
        except StopIteration:
            self.epoch, self._it = self.epoch + 1, None
            return self.next()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "loader": self.loader.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        loader = state["loader"]
        self.loader.load_state_dict(loader)
        # an epoch that was used up at the checkpoint: the next batch opens the following epoch
        done = loader["started"] and loader["consumed"] >= loader["num_batches"]
        self.epoch = int(state["epoch"]) + int(done)
        self._it = None


class RandomWindows:
    """nanoGPT's ``get_batch``: ``batch_size`` random windows of ``block_size + 1`` tokens from one long
    array; x is the window without its last token, y without its first. One draw per step from a
    seeded generator, so the stream's state is just the generator's."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int) -> None:
        if len(tokens) <= block_size + 1:
            raise ValueError(f"RandomWindows: {len(tokens)} tokens is too short for block_size {block_size}")
        self.windows = np.lib.stride_tricks.sliding_window_view(tokens.astype(np.int64), block_size + 1)
        self.batch_size = batch_size
        self.generator = suanli.Generator(seed)
        self.epoch = 0

    def next(self) -> tuple[suanli.Tensor, suanli.Tensor]:
        ix = self.generator.numpy.integers(0, len(self.windows), self.batch_size)
        chunk = self.windows[ix]                                  # (B, block_size + 1)
        return suanli.tensor(chunk[:, :-1]), suanli.tensor(chunk[:, 1:])

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": 0, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class FullBatch:
    """The whole (tiny) data set as one batch, every step -- BabyGPT's training."""

    def __init__(self, *tensors: suanli.Tensor) -> None:
        self.tensors = tensors
        self.epoch, self.index = 0, 0

    def next(self) -> tuple[suanli.Tensor, ...]:
        self.index += 1
        return self.tensors

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


# --------------------------------------------------------------------------------------------------
# the task a recipe hands over, and what a run gives back
# --------------------------------------------------------------------------------------------------

@dataclass
class Task:
    """Everything the loop needs to know about one recipe."""

    model: suanli.nn.Module
    batches: BatchStream
    loss: Callable[[suanli.nn.Module, Any], suanli.Tensor]        # (model, batch) -> scalar loss
    evaluate: Callable[[suanli.nn.Module], dict[str, float]]     # model -> {"loss": ..., "accuracy": ...}
    steps_per_epoch: int | None = None                           # None: a step-based recipe
    description: str = ""                                        # one line for the report
    data: dict[str, Any] = field(default_factory=dict)           # recipe-specific (e.g. the test tensors)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did and where it wrote."""

    steps: int
    epochs: float
    seconds: float
    metrics: dict[str, float]
    history: dict[str, dict[str, list]]
    files: dict[str, str] = field(default_factory=dict)
    stopped_early: bool = False
    extras: dict[str, Any] = field(default_factory=dict)     # recipe-specific results (samples, ...)


# --------------------------------------------------------------------------------------------------
# optimizer, schedule and mixed precision from the config
# --------------------------------------------------------------------------------------------------

def build_optimizer(cfg: TrainConfig, model: suanli.nn.Module) -> Any:
    """The optimizer of ``cfg.optim`` over the model's parameters (weight decay on every parameter, or
    only on matrices and kernels when ``optim.decay_1d`` is false, as nanoGPT does)."""
    from suanli import optim

    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.weight_decay and not o.decay_1d:
        groups: Any = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": o.weight_decay},
                       {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    else:
        groups = params
    if o.name == "sgd":
        return optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    cls = optim.Adam if o.name == "adam" else optim.AdamW
    return cls(groups, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)


def build_scheduler(cfg: TrainConfig, optimizer: Any, total_steps: int) -> Any | None:
    """Linear warm-up and/or cosine decay to ``min_lr`` over ``total_steps``; None for a constant lr."""
    from suanli.optim import lr_scheduler as S

    o = cfg.optim
    warm = min(o.warmup_steps, total_steps)
    parts = []
    if warm:
        parts.append(S.LinearLR(optimizer, start_factor=1.0 / warm, end_factor=1.0, total_iters=warm))
    if o.schedule == "cosine":
        parts.append(S.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warm), eta_min=o.min_lr))
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return S.SequentialLR(optimizer, parts, milestones=[warm])


def amp_dtype(mode: str) -> Any:
    return {"bf16": suanli.bfloat16, "fp16": suanli.float16}.get(mode)


def autocast_context(mode: str) -> contextlib.AbstractContextManager:
    """``suanli.amp.autocast`` for "bf16"/"fp16", a no-op for "none"."""
    if mode == "none":
        return contextlib.nullcontext()
    from suanli import amp
    return amp.autocast(dtype=amp_dtype(mode))


# --------------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------------

class Trainer:
    """Runs a :class:`Task` under a :class:`~suanli.train.config.TrainConfig`.

    Files written to ``cfg.out_dir`` (each atomically): ``checkpoint.safetensors`` (everything needed to
    resume), ``model.safetensors`` (the final weights), ``history.json``, ``config.toml`` (the resolved
    config) and ``curves.png`` (when matplotlib is installed).
    """

    def __init__(self, cfg: TrainConfig, task: Task, log: Callable[[str], None] | None = None) -> None:
        self.cfg, self.task = cfg, task
        self.model = task.model
        if cfg.max_steps:
            self.total_steps = cfg.max_steps
        elif task.steps_per_epoch:
            self.total_steps = cfg.epochs * task.steps_per_epoch
        else:
            raise ValueError(f"recipe {cfg.recipe!r} is step-based: set max_steps")
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total_steps)
        self.scaler = None
        if cfg.amp == "fp16":
            from suanli import amp
            self.scaler = amp.GradScaler()
        self.step = 0
        self.history: dict[str, dict[str, list]] = {"train": {"step": [], "loss": []}, "eval": {"step": []}}
        self.metrics: dict[str, float] = {}
        self._log = log or print
        self._bar: Any = None

    # -- files -------------------------------------------------------------------------------------

    def path(self, name: str) -> str:
        return os.path.join(self.cfg.out_dir, name)

    def save_checkpoint(self, path: str | None = None) -> str:
        """Model, optimizer, scheduler, scaler, RNG, step/epoch, stream position, curves and config."""
        from suanli import io

        path = path or self.path("checkpoint.safetensors")
        io.save_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                           scaler=self.scaler, epoch=self.task.batches.epoch, step=self.step,
                           extra={"batches": self.task.batches},
                           metadata={"config": to_dict(self.cfg), "history": self.history,
                                     "metrics": self.metrics})
        return path

    def load_checkpoint(self, path: str) -> None:
        """Restore everything :meth:`save_checkpoint` saved (``--resume PATH``)."""
        from suanli import io

        saved = io.read_checkpoint_info(path).get("metadata") or {}
        saved_recipe = saved.get("config", {}).get("recipe")
        if saved_recipe != self.cfg.recipe:
            raise io.CheckpointError(f"--resume {path}: the checkpoint is from recipe {saved_recipe!r}, "
                                     f"this run is {self.cfg.recipe!r}")
        state = io.load_checkpoint(path, model=self.model, optimizer=self.optimizer,
                                   scheduler=self.scheduler, scaler=self.scaler,
                                   extra={"batches": self.task.batches})
        meta = state["metadata"]
        self.step = int(state["step"])
        self.history = meta["history"]
        self.metrics = meta.get("metrics", {})

    def _write_text(self, name: str, text: str) -> str:
        from suanli.io import atomic_write
        with atomic_write(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    # -- one step and one evaluation ---------------------------------------------------------------

    def train_step(self, batch: Any) -> float:
        cfg, model, opt = self.cfg, self.model, self.optimizer
        model.train()
        with autocast_context(cfg.amp):
            loss = self.task.loss(model, batch)
        opt.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if cfg.optim.grad_clip:
                self.scaler.unscale_(opt)
                suanli.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            self.scaler.step(opt)
            self.scaler.update()
        else:
            loss.backward()
            if cfg.optim.grad_clip:
                suanli.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            opt.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return float(loss.item())

    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        with suanli.no_grad(), autocast_context(self.cfg.amp):
            metrics = {k: float(v) for k, v in self.task.evaluate(self.model).items()}
        self.history["eval"]["step"].append(self.step)
        for k, v in metrics.items():
            self.history["eval"].setdefault(k, []).append(v)
        self.metrics = metrics
        return metrics

    # -- the loop ----------------------------------------------------------------------------------

    def _due(self, interval: int) -> bool:
        if self.step == self.total_steps:
            return True
        if interval:
            return self.step % interval == 0
        spe = self.task.steps_per_epoch
        return bool(spe) and self.step % spe == 0

    def _epoch_of(self, step: int) -> float:
        spe = self.task.steps_per_epoch
        return step / spe if spe else 0.0

    def fit(self, resume: str | None = None, stop_after: int | None = None) -> TrainResult:
        """Train to ``total_steps`` (from a checkpoint when ``resume`` is given).

        ``stop_after`` ends the run after that step once its checkpoint is written, as if the machine
        went away there (what the resume test uses).
        """
        from tqdm.auto import tqdm

        cfg = self.cfg
        if resume:
            self.load_checkpoint(resume)
            self._log(f"resumed from {resume} at step {self.step}")
        os.makedirs(cfg.out_dir, exist_ok=True)
        self._write_text("config.toml", dumps(cfg))
        files: dict[str, str] = {"config": self.path("config.toml")}
        t0 = time.perf_counter()
        bar = tqdm(total=self.total_steps, initial=self.step, desc=cfg.recipe, unit="step",
                   disable=not cfg.progress, dynamic_ncols=True, leave=True)
        self._bar = bar
        stopped = False
        avg = None
        try:
            while self.step < self.total_steps:
                loss = self.train_step(self.task.batches.next())
                if not math.isfinite(loss) and self.scaler is None:
                    raise FloatingPointError(f"step {self.step + 1}: the loss is {loss}; lower optim.lr "
                                             f"or set optim.grad_clip")
                self.step += 1
                self.history["train"]["step"].append(self.step)
                self.history["train"]["loss"].append(loss)
                avg = loss if avg is None else 0.9 * avg + 0.1 * loss
                bar.update(1)
                if self.step % max(1, cfg.log_interval) == 0 or self.step == self.total_steps:
                    bar.set_postfix_str(f"loss {avg:.4f}" + self._metrics_text(short=True))
                if self._due(cfg.eval_interval):
                    m = self.evaluate()
                    bar.set_postfix_str(f"loss {avg:.4f}" + self._metrics_text(short=True))
                    line = f"step {self.step}"
                    if self.task.steps_per_epoch:
                        line += f" (epoch {self._epoch_of(self.step):.2f})"
                    bar.write(f"{line}: train loss {avg:.4f}{self._metrics_text()}")
                if self._due(cfg.checkpoint_interval) or self.step == stop_after:
                    files["checkpoint"] = self.save_checkpoint()
                if self.step == stop_after:
                    stopped = True
                    break
        finally:
            bar.close()
            self._bar = None
        seconds = time.perf_counter() - t0
        self._write_text("history.json", json.dumps(self.history))
        files["history"] = self.path("history.json")
        if not stopped:
            from suanli import io
            if "checkpoint" not in files:       # resumed a run that had already finished
                files["checkpoint"] = self.save_checkpoint()
            files["model"] = self.path("model.safetensors")
            io.save_file(self.model.state_dict(), files["model"])
            if cfg.plot:
                files.update(self.plot())
        return TrainResult(steps=self.step, epochs=self._epoch_of(self.step), seconds=seconds,
                           metrics=dict(self.metrics), history=self.history, files=files,
                           stopped_early=stopped)

    def plot(self) -> dict[str, str]:
        from suanli import plot
        try:
            return {"curves": plot.plot_curves(self.history, self.path("curves.png"),
                                               title=self.task.description or self.cfg.recipe)}
        except plot.PlotUnavailable as exc:
            self._log(f"note: no curves.png -- {exc}")
            return {}

    def _metrics_text(self, short: bool = False) -> str:
        parts = []
        for k, v in self.metrics.items():
            if k == "accuracy":
                parts.append(f"acc {v:.2%}" if short else f"accuracy {v:.2%}")
            elif not short:
                parts.append(f"eval {k} {v:.4f}")
        return (", " if parts else "") + ", ".join(parts)
