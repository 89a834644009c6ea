"""Concurrent chip reads on dask's threaded scheduler (GDAL releases the GIL during reads)."""

from __future__ import annotations

from typing import Any, Callable, Sequence


def map_threads(fn: Callable[[Any], Any], args: Sequence[Any], *, workers: int,
                on_done: Callable[[int], Any] | None = None) -> list[Any]:
    """``[fn(a) for a in args]``, computed by ``workers`` threads; results keep the input order.

    Args:
        fn: the function; it must be thread-safe (each chip read opens its own datasets).
        args: one argument per task.
        workers: number of threads; 1 runs sequentially in the calling thread.
        on_done: called with 1 after each task (progress bars).
    """
    import dask
    from dask.callbacks import Callback

    if workers <= 1:
        results = []
        for a in args:
            results.append(fn(a))
            if on_done:
                on_done(1)
        return results

    def task(a: Any) -> Any:
        return fn(a)

    class _Progress(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):  # noqa: D401 - dask hook
            if on_done and isinstance(key, tuple) is False and str(key).startswith("read-chip"):
                on_done(1)

    tasks = [dask.delayed(task, pure=False)(a, dask_key_name=f"read-chip-{i}") for i, a in enumerate(args)]
    with _Progress():
        return list(dask.compute(*tasks, scheduler="threads", num_workers=workers))
