"""DataLoader: batches from a dataset, optionally shuffled and prefetched in a background thread.

Semantics follow ``torch.utils.data.DataLoader`` (batch count, ``drop_last``, ``default_collate``'s
structures). Shuffling draws one seed per epoch from a suanli :class:`~suanli.random.Generator` (the
global one unless ``generator=`` is given, so ``suanli.manual_seed`` makes it deterministic) and
permutes with it; ``state_dict()`` records that seed and how many batches were handed out, so a
checkpoint can resume in the middle of a shuffled epoch.

>>> import suanli
>>> from suanli.data import DataLoader, TensorDataset
>>> ds = TensorDataset(suanli.arange(10).float(), suanli.arange(10))
>>> loader = DataLoader(ds, batch_size=4)
>>> [x.shape for x, y in loader], len(loader)
([(4,), (4,), (2,)], 3)
>>> _ = suanli.manual_seed(0); a = [y.tolist() for _, y in DataLoader(ds, batch_size=5, shuffle=True)]
>>> _ = suanli.manual_seed(0); b = [y.tolist() for _, y in DataLoader(ds, batch_size=5, shuffle=True)]
>>> a == b, sorted(a[0] + a[1]) == list(range(10))
(True, True)
"""
from __future__ import annotations

import collections.abc as cabc
import queue
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..creation import from_numpy
from ..errors import op_error
from ..random import Generator, rng
from ..tensor import Tensor

__all__ = ["DataLoader", "default_collate"]


# ----------------------------------------------------------------------------------- collate
def _stack(arrays: list[np.ndarray], what: str) -> np.ndarray:
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise op_error("default_collate", f"cannot stack {what}s of different shapes into one batch",
                           expect=f"every item has shape {shape} (item 0)",
                           actual=f"item {i} has shape {a.shape}",
                           hint="pad the items to one size, or pass collate_fn= that handles variable sizes",
                           cls=ValueError)
    return np.stack(arrays)


def default_collate(batch: Sequence[Any]) -> Any:
    """Stack a list of samples into a batch, as ``torch.utils.data.default_collate`` does.

    Tensors and arrays are stacked along a new first dim; Python floats become a float64 tensor, ints
    int64, bools bool; strings stay a list; dicts, named tuples, tuples and lists are collated field by
    field (tuples come back as lists, like torch).

    >>> import numpy as np
    >>> out = default_collate([{"x": np.zeros(2), "y": 1}, {"x": np.ones(2), "y": 2}])
    >>> out["x"].shape, out["y"].tolist(), out["y"].dtype
    ((2, 2), [1, 2], dtype('int64'))
    """
    if len(batch) == 0:
        raise ValueError("default_collate: the batch is empty")
    elem = batch[0]
    if isinstance(elem, Tensor):
        if any(t.requires_grad for t in batch if isinstance(t, Tensor)):
            from ..ops import stack           # keep the autograd history (rare in a dataset)
            return stack(list(batch))
        return from_numpy(_stack([np.asarray(t) for t in batch], "tensor"))
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "OUSV":
            raise TypeError(f"default_collate: cannot make a tensor of NumPy arrays with dtype {elem.dtype}")
        return from_numpy(_stack([np.asarray(a) for a in batch], "array"))
    if isinstance(elem, np.generic) and elem.dtype.kind in "biuf":
        return from_numpy(np.array(batch))
    if isinstance(elem, bool):
        return from_numpy(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return from_numpy(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return from_numpy(np.array(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, cabc.Mapping):
        collated = {k: default_collate([d[k] for d in batch]) for k in elem}
        try:
            return type(elem)(collated)
        except TypeError:
            return collated
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):       # namedtuple
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, cabc.Sequence):
        sizes = {len(s) for s in batch}
        if len(sizes) != 1:
            raise op_error("default_collate", "each sample in the batch must have the same number of fields",
                           actual=f"sample sizes {sorted(sizes)}", cls=ValueError)
        return [default_collate(list(s)) for s in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
                    f"found {type(elem).__name__}")


# ----------------------------------------------------------------------------------- loader
class DataLoader:
    """Iterate over ``dataset`` in batches.

    ``shuffle``: a new random order every epoch (seeded, see the module doc). ``drop_last``: leave out a
    last, smaller batch. ``collate_fn``: turns a list of samples into a batch (default
    :func:`default_collate`). ``prefetch=k > 0`` prepares up to ``k`` batches ahead in one background
    thread (same batches, same order; an exception there is raised here, at the batch that failed).
    If the dataset defines ``fetch_batch(indices)`` and no ``collate_fn`` is given, whole batches are
    fetched at once (:class:`TensorDataset` does: one fancy index per tensor).

    Random transforms inside a dataset should use their own ``Generator`` when ``prefetch > 0``: the
    background thread would otherwise draw from the global stream in a timing-dependent order.
    """

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 collate_fn: Callable[[list[Any]], Any] | None = None, generator: Generator | None = None,
                 prefetch: int = 0) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise op_error("DataLoader", "batch_size must be a positive integer",
                           actual=f"batch_size={batch_size!r}", cls=ValueError)
        if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
            raise op_error("DataLoader", "prefetch must be an integer >= 0 (batches prepared ahead)",
                           actual=f"prefetch={prefetch!r}", cls=ValueError)
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError(f"DataLoader: generator must be a suanli.Generator, got {type(generator).__name__}")
        try:
            n = len(dataset)
        except TypeError:
            raise TypeError(f"DataLoader: the dataset must define __len__ and __getitem__ (map-style); "
                            f"got {type(dataset).__name__}") from None
        if n == 0:
            raise op_error("DataLoader", "the dataset is empty (len(dataset) == 0); there is nothing to load",
                           hint="check the data path / split that built the dataset", cls=ValueError)
        if drop_last and n < batch_size:
            raise op_error("DataLoader", "drop_last=True with fewer samples than one batch gives no batches",
                           actual=f"len(dataset)={n} < batch_size={batch_size}",
                           hint="use a smaller batch_size or drop_last=False", cls=ValueError)
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, int(batch_size), shuffle, drop_last
        self.collate_fn, self.generator, self.prefetch = collate_fn, generator, int(prefetch)
        self._fast = collate_fn is None and callable(getattr(dataset, "fetch_batch", None))
        # resume bookkeeping: the current epoch's seed, batches handed out, and which iterator is live
        self._seed: int | None = None
        self._started = False
        self._consumed = 0
        self._live = 0
        self._pending: tuple[int | None, int] | None = None

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # ------------------------------------------------------------------ iteration
    def _order(self, seed: int | None) -> np.ndarray:
        n = len(self.dataset)
        if seed is None:
            return np.arange(n)
        return np.random.Generator(np.random.PCG64(seed)).permutation(n)

    def _fetch(self, indices: np.ndarray) -> Any:
        if self._fast:
            return self.dataset.fetch_batch(indices)
        collate = self.collate_fn or default_collate
        return collate([self.dataset[int(i)] for i in indices])

    def _batches(self, order: np.ndarray, start: int) -> Iterator[Any]:
        bs = self.batch_size
        for b in range(start, len(self)):
            yield self._fetch(order[b * bs:(b + 1) * bs])

    def __iter__(self) -> Iterator[Any]:
        # the epoch's randomness is drawn here, at iter() time (as torch does), not at the first next()
        if self._pending is not None:
            seed, start = self._pending
            self._pending = None
        else:
            seed = int(rng(self.generator).integers(0, 2 ** 63)) if self.shuffle else None
            start = 0
        self._seed, self._started, self._consumed = seed, True, start
        self._live += 1
        token = self._live
        source = self._batches(self._order(seed), start)
        if self.prefetch:
            source = _prefetched(source, self.prefetch)
        return self._count(source, token)

    def _count(self, source: Iterator[Any], token: int) -> Iterator[Any]:
        try:
            for batch in source:
                if token == self._live:
                    self._consumed += 1
                yield batch
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: the current epoch's shuffle seed and how many batches were handed out."""
        out: dict[str, Any] = {"started": self._started, "seed": self._seed, "consumed": self._consumed,
                               "num_batches": len(self)}
        if self.generator is not None:
            out["generator"] = self.generator.get_state()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next ``iter(loader)`` continue the saved epoch (or start a fresh one if it was done)."""
        try:
            started, seed, consumed, nb = state["started"], state["seed"], int(state["consumed"]), state["num_batches"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"DataLoader.load_state_dict: expected the dict from state_dict(), got {state!r}") from None
        if nb != len(self):
            raise op_error("DataLoader.load_state_dict", "the saved loader had a different number of batches",
                           expect=f"{len(self)} batches per epoch", actual=f"{nb}",
                           hint="use the same dataset, batch_size and drop_last as the saved run", cls=ValueError)
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])
        self._seed, self._started, self._consumed = seed, bool(started), consumed
        self._pending = (None if seed is None else int(seed), consumed) if started and consumed < nb else None


_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _prefetched(source: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run ``source`` in a background thread, at most ``depth`` items ahead of the consumer."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put(item):
                    return
        except BaseException as exc:      # noqa: BLE001 - handed to the consumer, raised there
            put(_Failure(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=work, name="suanli-DataLoader-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                item.exc.add_note("(raised while preparing a batch in the DataLoader prefetch thread)")
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)
