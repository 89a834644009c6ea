"""Where the build's chip reads run: a dask.distributed cluster (local or remote), threads, or in turn."""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

from ackd_bench.benchmark.errors import AckdBenchError

# Chips one worker reads at a time. A read mostly waits on HTTP range requests (tens of ms
# each) with the GIL released inside GDAL, so a worker keeps several in flight, not one per core.
READS_PER_WORKER = 8
THREADS = "threads"  # scheduler value: a thread pool in this process, no cluster
SYNC = "sync"  # scheduler value: one chip after another in the calling thread (debugging)


class SchedulerError(AckdBenchError):
    """The dask scheduler cannot be reached, has no workers, or was lost during the reads."""


class ReadPool:
    """Runs chip reads concurrently and hands back their results in input order.

    Only the function and its arguments travel to the workers (``read_chip``, the candidate row,
    its items, the modality spec and a `Remote`, which signs hrefs on the worker right before each
    read), never the catalogue client, so the same calls run on a local cluster, a remote one, or
    threads. The local cluster and the connection are made once per pool and shut down by
    :meth:`close` (or when the pool is garbage-collected, e.g. after an error).

    Args:
        workers: workers of the local cluster, each reading ``threads_per_worker`` chips at a
            time; with ``scheduler="threads"`` the pool has that many threads in all. Ignored
            with a scheduler address (that cluster has its own workers).
        scheduler: None for a local cluster, started on first use; ``"tcp://HOST:PORT"`` for a
            running dask scheduler, connected now so that a wrong address fails before any work;
            ``"threads"`` for threads of this process; ``"sync"`` for sequential reads.
        threads_per_worker: chips each worker reads at a time.
        processes: local-cluster workers are processes instead of threads of this process. Threads
            are the default: reads wait on I/O with the GIL released inside GDAL, they share GDAL's
            cache of file headers, and the cluster starts in well under a second instead of
            seconds (``benchmarks/read_throughput.py`` measures both).
        timeout: seconds to wait for a scheduler address to answer; None: dask's
            ``distributed.comm.timeouts.connect``.
    """

    def __init__(self, workers: int = 4, scheduler: str | None = None, *,
                 threads_per_worker: int = READS_PER_WORKER, processes: bool = False,
                 timeout: float | None = None) -> None:
        if workers < 1 or threads_per_worker < 1:
            raise ValueError(f"workers and threads_per_worker must be >= 1, got {workers}, {threads_per_worker}")
        self.workers = workers
        self.scheduler = scheduler
        self.threads_per_worker = threads_per_worker
        self.processes = processes
        self.timeout = timeout
        self._client = None
        self._shutdown = None
        if scheduler not in (None, THREADS, SYNC):
            self._connect()

    def __enter__(self) -> ReadPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and shut down the local cluster, if any (idempotent)."""
        if self._shutdown is not None:
            self._shutdown()

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], on_done: Callable[[int], Any] | None = None,
            **kwargs: Any) -> list[Any]:
        """``[fn(*args, **kwargs) for args in zip(*iterables)]``, computed concurrently, in input order.

        Args:
            fn: a module-level function (pickled by reference for process and remote workers).
            *iterables: one argument list per positional parameter, as for ``map``.
            on_done: called with 1 as each call finishes (a progress bar's ``update``).
            **kwargs: arguments shared by all calls (sent with each task; keep them small).

        Raises:
            SchedulerError: the cluster was lost or a worker died repeatedly on a read; the
                results of earlier calls are unaffected.
        """
        task = functools.partial(fn, **kwargs)
        args = list(zip(*iterables))
        done = on_done or (lambda n: None)
        if self.scheduler == SYNC:
            results = []
            for a in args:
                results.append(task(*a))
                done(1)
            return results
        if self.scheduler == THREADS:
            return _map_threads(task, args, self.workers * self.threads_per_worker, done)
        return self._map_cluster(task, args, done)

    def _map_cluster(self, task: Callable[..., Any], args: list[tuple], done: Callable[[int], Any]) -> list[Any]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        if not args:
            return []
        client = self._client or self._start_local()
        name = getattr(task.func, "__name__", "task").strip("_").replace("_", "-")
        futures = client.map(task, *zip(*args), key=name, pure=False)
        where = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        lost = False
        try:
            for fut, result in as_completed(futures, with_results=True, loop=client.loop):
                if isinstance(result, CancelledError):  # the client cancels all futures when it loses the scheduler
                    lost = True
                    break
                results[where[fut.key]] = result
                done(1)
        except KilledWorker as err:
            client.cancel(futures)
            raise SchedulerError(f"dask workers ({self._where()}) died while running {err.task!r} — see the "
                                 "workers' logs; rerun the same command to resume") from None
        except BaseException:
            client.cancel(futures)
            raise
        if lost:
            # Stop the client's reconnect attempts now; distributed logs their cancellation as an
            # error with a traceback, which would bury the one line that says what to do.
            logger = logging.getLogger("distributed.client")
            level = logger.level
            logger.setLevel(logging.CRITICAL)
            try:
                self.close()
            finally:
                logger.setLevel(level)
            raise SchedulerError(f"lost the dask scheduler ({self._where()}) while reading; the chips read so far "
                                 "are kept — rerun the same command to resume")
        return results

    def _start_local(self):
        from distributed import Client, LocalCluster

        # Process workers listen on loopback only; thread workers talk in-process (no sockets).
        # The scheduler's HTTP endpoint (no dashboard) takes any free loopback port, not 8787.
        where = {"host": "127.0.0.1"} if self.processes else {}
        # Thread workers share the build process: each would compare the whole process's memory
        # (the chips read so far, GDAL's caches) with its 1/n share of RAM and pause, stalling the
        # build on a large dataset. Their memory is the build's, so they get no limit of their own.
        limit = {} if self.processes else {"memory_limit": 0}
        cluster = LocalCluster(n_workers=self.workers, threads_per_worker=self.threads_per_worker,
                               processes=self.processes, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, **where, **limit)
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        self._own(client, cluster)
        return client

    def _connect(self) -> None:
        from distributed import Client
        from distributed.comm import resolve_address

        timeout = {} if self.timeout is None else {"timeout": self.timeout}
        try:
            resolve_address(self.scheduler)  # a malformed address would leave a Client that hangs on exit
            client = Client(self.scheduler, set_as_default=False, **timeout)
        except (OSError, TimeoutError, ValueError, TypeError) as err:
            raise SchedulerError(
                f"cannot reach the dask scheduler at {self.scheduler} ({_short(err)}) — start it "
                "(`dask scheduler`, then `dask worker ADDRESS`) or leave out --scheduler for a local cluster"
            ) from None
        self._own(client, None)
        try:
            client.wait_for_workers(1, timeout=self.timeout or 30)
        except (OSError, TimeoutError) as err:
            self.close()
            raise SchedulerError(f"the dask scheduler at {self.scheduler} has no workers — start some "
                                 f"with `dask worker {self.scheduler}`") from err

    def _own(self, client, cluster) -> None:
        self._client = client
        self._shutdown = weakref.finalize(self, _shutdown, client, cluster)

    def _where(self) -> str:
        return self.scheduler if self.scheduler else "the local cluster"


def _shutdown(client, cluster) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


def _map_threads(task: Callable[..., Any], args: list[tuple], threads: int, done: Callable[[int], Any]) -> list[Any]:
    from concurrent.futures import as_completed

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="read-chip")
    try:
        futures = [pool.submit(task, *a) for a in args]
        where = {f: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        for fut in as_completed(futures):
            results[where[fut]] = fut.result()
            done(1)
        return results
    finally:
        pool.shutdown(cancel_futures=True)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
    return text[:160]
