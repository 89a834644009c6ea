"""`ackd-bench sweep`: a grid of runs (dataset × pair × method × seed) on dask.distributed, resumable."""

from __future__ import annotations

import dataclasses
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.errors import AckdBenchError

GRID_DIR = Path(__file__).parent / "grids"
GRID_SCHEMA_VERSION = 1
GRID_KEYS = {"schema_version", "name", "description", "datasets", "pairs", "methods", "seeds", "profile",
             "profile_overrides", "pairing"}


class GridError(AckdBenchError):
    """A sweep grid file is missing or does not follow the grid schema."""


@dataclass(frozen=True)
class MethodSpec:
    """One method of a grid with the options and teacher pairing it runs with (both join its table label)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    pairing: str = "permuted"

    @property
    def label(self) -> str:
        from ackd_bench.benchmark.runner import method_label

        return method_label(self.name, self.options, self.pairing)


@dataclass(frozen=True)
class Grid:
    """A sweep: every dataset × (teacher, student) pair × method × seed, under one training profile."""

    name: str
    datasets: tuple[Path, ...]
    pairs: tuple[tuple[str, str], ...]
    methods: tuple[MethodSpec, ...]
    seeds: tuple[int, ...]
    profile: str
    profile_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """One training run of a sweep and the RunResult file it writes."""

    dataset: Path
    teacher: str
    student: str
    method: MethodSpec
    seed: int
    filename: str

    def describe(self) -> str:
        return f"{self.dataset.name}: {self.teacher}→{self.student} {self.method.label} seed {self.seed}"


def list_grids() -> list[str]:
    """Names of the built-in grids (``benchmark/grids/*.yaml``)."""
    return sorted(p.stem for p in GRID_DIR.glob("*.yaml"))


def load_grid(name_or_path: str | Path, *, datasets: list[Path] | None = None,
              seeds: list[int] | None = None, pairing: str | None = None) -> Grid:
    """Read and validate a grid: a built-in name (``paper``) or a YAML file.

    Args:
        name_or_path: built-in grid name or path to a ``.yaml`` file.
        datasets: replace the grid's datasets (``--dataset``); relative paths in the file are
            resolved against the file's folder.
        seeds: replace the grid's seeds.
        pairing: replace the grid's ``pairing`` (``--pairing``; see :func:`parse_grid`).

    Raises:
        GridError: unknown grid, unknown key, method, option, architecture or profile, or no datasets.
    """
    from ackd_bench.benchmark.boundary import InputError, load_file

    path = GRID_DIR / f"{name_or_path}.yaml" if str(name_or_path) in list_grids() else Path(name_or_path)
    if not path.is_file():
        raise GridError(f"no grid {str(name_or_path)!r}: not a built-in grid ({', '.join(list_grids())}) "
                        "and no such file")
    try:
        data = load_file(path, what="grid", unique_keys=True)
    except InputError as err:
        raise GridError(str(err)) from None
    return parse_grid(data, source=str(path), base=path.parent, datasets=datasets, seeds=seeds, pairing=pairing)


def parse_grid(data: Any, *, source: str = "grid", base: Path = Path("."), datasets: list[Path] | None = None,
               seeds: list[int] | None = None, pairing: str | None = None) -> Grid:
    """Validate a grid's parsed YAML (see :func:`load_grid`).

    Teacher pairing (``benchmark.data.PAIRINGS``): the grid's top-level ``pairing`` (or the
    ``pairing`` argument, which replaces it) applies to every method it can apply to (methods that
    use a teacher and take the harness's partners); the others run as always. A method entry's
    own ``pairing`` applies to that method and must make sense for it.
    """
    from ackd_bench.benchmark.boundary import MAX_SEED, InputError, check_fields
    from ackd_bench.benchmark.data import PAIRINGS
    from ackd_bench.benchmark.method import list_methods, method_config
    from ackd_bench.benchmark.protocol import PROFILES, Profile
    from ackd_bench.benchmark.runner import check_pairing, pairing_applies

    if not isinstance(data, dict):
        raise GridError(f"{source}: a grid is a mapping with keys {', '.join(sorted(GRID_KEYS))}")
    unknown = sorted(set(data) - GRID_KEYS)
    if unknown:
        raise GridError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                        f"known keys: {', '.join(sorted(GRID_KEYS))}")
    if data.get("schema_version", GRID_SCHEMA_VERSION) != GRID_SCHEMA_VERSION:
        raise GridError(f"{source}: schema_version {data['schema_version']!r} is not {GRID_SCHEMA_VERSION}")
    for key in ("pairs", "methods"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise GridError(f"{source}: {key!r} must be a non-empty list")

    pairs = []
    for i, pair in enumerate(data["pairs"]):
        if not isinstance(pair, dict) or set(pair) != {"teacher", "student"}:
            raise GridError(f"{source}: pairs[{i}] must be a mapping with exactly 'teacher' and 'student'")
        for arch in pair.values():
            _check_arch(arch, f"{source}: pairs[{i}]")
        pairs.append((pair["teacher"], pair["student"]))

    default_pairing = pairing if pairing is not None else data.get("pairing", "permuted")
    if not isinstance(default_pairing, str) or default_pairing not in PAIRINGS:
        raise GridError(f"{source}: unknown pairing {default_pairing!r}; use one of {', '.join(PAIRINGS)}")
    known = list_methods()
    methods = []
    for i, entry in enumerate(data["methods"]):
        name, options, own = ((entry, {}, None) if isinstance(entry, str)
                              else _method_entry(entry, f"{source}: methods[{i}]"))
        if name not in known:
            raise GridError(f"{source}: methods[{i}]: unknown method {name!r}; known methods: {', '.join(known)}")
        try:
            method_config(name, options)
            if own is not None:
                check_pairing(name, own)
        except (AckdBenchError, TypeError, ValueError) as err:
            raise GridError(f"{source}: methods[{i}] ({name}): {err}") from None
        chosen = own if own is not None else default_pairing if pairing_applies(name) else "permuted"
        methods.append(MethodSpec(name, dict(options), chosen))
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise GridError(f"{source}: a method is listed twice with the same options ({', '.join(labels)})")

    seed_list = list(seeds) if seeds is not None else data.get("seeds", [0])
    if (not isinstance(seed_list, list) or not seed_list
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seed_list)):
        raise GridError(f"{source}: 'seeds' must be a non-empty list of integers in 0..{MAX_SEED}")

    profile = data.get("profile", "fast")
    if not isinstance(profile, str) or profile not in PROFILES:
        raise GridError(f"{source}: unknown profile {profile!r}; known profiles: {', '.join(PROFILES)}")
    overrides = data.get("profile_overrides") or {}
    fields = {f.name for f in dataclasses.fields(Profile)} - {"name"}
    if not isinstance(overrides, dict) or set(overrides) - fields:
        raise GridError(f"{source}: 'profile_overrides' may set only {', '.join(sorted(fields))}")
    for key in ("name", "description"):
        if not isinstance(data.get(key, ""), str):
            raise GridError(f"{source}: {key!r} must be text, got {data[key]!r}")
    try:
        check_fields(overrides, Profile, f"{source}: profile_overrides")
        dataclasses.replace(PROFILES[profile], **overrides)
    except InputError as err:
        raise GridError(str(err)) from None
    except (TypeError, ValueError, AckdBenchError) as err:
        raise GridError(f"{source}: profile_overrides: {err}") from None

    if datasets:
        paths = [Path(d) for d in datasets]
    else:
        listed = data.get("datasets") or []
        if not isinstance(listed, list) or not all(isinstance(d, str) for d in listed):
            raise GridError(f"{source}: 'datasets' must be a list of dataset folders")
        paths = [p if p.is_absolute() else base / p for p in map(Path, listed)]
    if not paths:
        raise GridError(f"{source}: no datasets; give them with --dataset DIR (repeatable) or in the grid's 'datasets'")
    return Grid(name=str(data.get("name", Path(source).stem)), datasets=tuple(paths), pairs=tuple(pairs),
                methods=tuple(methods), seeds=tuple(seed_list), profile=profile, profile_overrides=dict(overrides))


def _method_entry(entry: Any, where: str) -> tuple[str, dict, str | None]:
    if not isinstance(entry, dict) or "method" not in entry or set(entry) - {"method", "options", "pairing"}:
        raise GridError(f"{where}: a method is a name or a mapping "
                        "{method: NAME, options: {KEY: VALUE}, pairing: permuted|oracle|class-mean}")
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise GridError(f"{where}: 'options' must be a mapping of option names to values")
    return entry["method"], options, entry.get("pairing")


def _check_arch(arch: Any, where: str) -> None:
    import timm

    from ackd_bench.benchmark.models import PAPER_ARCHS, _register_shufflenet

    _register_shufflenet()
    if not isinstance(arch, str) or not timm.is_model(arch):
        raise GridError(f"{where}: unknown architecture {arch!r} (any timm model name; the paper's: "
                        f"{', '.join(PAPER_ARCHS)})")


def expand_grid(grid: Grid) -> list[Run]:
    """Every run of the grid, datasets outermost and seeds innermost, each with its RunResult file name.

    Raises:
        DatasetNotFoundError, DatasetCorruptError: a dataset cannot be opened (structure only is
            checked here; each run verifies the checksums itself).
        PairingError: a dataset cannot serve a method's pairing (oracle without latent truth).
    """
    from ackd_bench.benchmark.dataset import load_dataset
    from ackd_bench.benchmark.results import result_filename
    from ackd_bench.benchmark.runner import check_pairing_data

    runs = []
    for path in grid.datasets:
        ds = load_dataset(path, verify=False)
        for pairing in sorted({spec.pairing for spec in grid.methods}):
            check_pairing_data(ds, pairing)
        dataset = {"name": ds.manifest["name"], "fingerprint": ds.fingerprint}
        for teacher, student in grid.pairs:
            for spec in grid.methods:
                for seed in grid.seeds:
                    name = result_filename({"dataset": dataset, "teacher": {"arch": teacher},
                                            "student": {"arch": student},
                                            "method": {"name": spec.name, "label": spec.label}, "seed": seed})
                    runs.append(Run(Path(path), teacher, student, spec, seed, name))
    return runs


def cache_keys(run: Run) -> tuple[tuple, ...]:
    """The shared caches a run fills: its teacher and, for SemBridge with SSM, its matcher.

    The runs of one key are started one after the other until one succeeds, so two workers never
    train (and overwrite) the same cached teacher or matcher at once.
    """
    keys: tuple[tuple, ...] = (("teacher", str(run.dataset), run.teacher, run.seed),)
    if run.method.name.startswith("sembridge") and run.method.options.get("ssm", True):
        matcher = tuple(sorted((k, str(v)) for k, v in run.method.options.items() if k.startswith("matcher")))
        keys += (("matcher", str(run.dataset), run.seed, matcher),)
    return keys


def train_run(dataset: str, method: str, options: dict, teacher: str, student: str, seed: int,
              profile: dict, device: str, out: str, torch_threads: int, compile_mode: str = "off",
              pairing: str = "permuted") -> str:
    """One sweep task, run on a dask worker: train and write one RunResult; returns its file name."""
    import torch

    from ackd_bench.benchmark.protocol import Profile
    from ackd_bench.benchmark.results import result_filename
    from ackd_bench.benchmark.runner import run_experiment

    if torch_threads:
        torch.set_num_threads(torch_threads)
    [result] = run_experiment(Path(dataset), method=method, arch=student, teacher_arch=teacher, seeds=[seed],
                              profile=Profile(**profile), device=device, out=Path(out), progress=False,
                              method_options=options or None, compile_mode=compile_mode, pairing=pairing)
    return result_filename(result)


@dataclass
class SweepReport:
    """What a sweep did: runs written now, runs skipped (already done) and failures with their reasons."""

    done: list[Run] = field(default_factory=list)
    skipped: list[Run] = field(default_factory=list)
    failed: list[tuple[Run, str]] = field(default_factory=list)


def run_sweep(grid: Grid, out: Path, *, workers: int = 1, scheduler: str | None = None, device: str = "auto",
              gpus_per_run: int = 0, retries: int = 1, progress: bool = True,
              compile_mode: str = "off") -> SweepReport:
    """Run every grid run whose RunResult is not yet in ``out``, on a dask cluster.

    Each run is one task (``resources={"GPU": gpus_per_run}`` when asked: start remote workers with
    ``dask worker ADDRESS --resources GPU=1``). A failing run is retried ``retries`` times, then
    recorded in the report; the other runs go on. ``compile_mode`` is passed to every run
    (:func:`benchmark.runner.run_experiment`).
    """
    from ackd_bench.benchmark.protocol import get_profile

    out = Path(out)
    runs = expand_grid(grid)
    report = SweepReport(skipped=[r for r in runs if (out / r.filename).exists()])
    todo = [r for r in runs if not (out / r.filename).exists()]
    if not todo:
        return report
    profile = dataclasses.asdict(get_profile(grid.profile, **grid.profile_overrides))
    if gpus_per_run and device == "auto":
        device = "cuda"
    threads = 0 if scheduler else max(1, _cpu_count() // workers)
    client, cluster = _start_client(workers=workers, scheduler=scheduler, gpus=gpus_per_run, threads=threads)
    try:
        _schedule(client, todo, report, profile=profile, device=device, out=out, threads=threads,
                  retries=retries, resources={"GPU": gpus_per_run} if gpus_per_run else None, progress=progress,
                  compile_mode=compile_mode)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return report


def _schedule(client, todo: list[Run], report: SweepReport, *, profile: dict, device: str, out: Path, threads: int,
              retries: int, resources: dict | None, progress: bool, compile_mode: str = "off") -> None:
    """Submit runs as their caches allow: a cache key is claimed by one run at a time until one fills it."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    pending = list(todo)
    ready: set[tuple] = set()
    claimed: set[tuple] = set()
    running: dict[Any, Run] = {}
    completed = as_completed([], loop=client.loop)
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress, file=sys.stderr)

    def submit_startable() -> None:
        for run in list(pending):
            keys = [k for k in cache_keys(run) if k not in ready]
            if any(k in claimed for k in keys):
                continue
            claimed.update(keys)
            pending.remove(run)
            future = client.submit(train_run, str(run.dataset), run.method.name, run.method.options, run.teacher,
                                   run.student, run.seed, profile, device, str(out), threads, compile_mode,
                                   run.method.pairing, key=f"run-{run.filename}",
                                   pure=False, retries=retries, resources=resources)
            running[future] = run
            completed.add(future)

    try:
        submit_startable()
        for future in completed:
            run = running.pop(future)
            claimed.difference_update(cache_keys(run))
            if future.status == "finished":
                ready.update(cache_keys(run))
                report.done.append(run)
            else:
                report.failed.append((run, _reason(future)))
            bar.update(1)
            submit_startable()
    except BaseException:
        client.cancel(list(running))
        raise
    finally:
        bar.close()


def _reason(future) -> str:
    if future.status == "cancelled":
        return "cancelled (the cluster lost the task or its worker); rerun the sweep to resume"
    err = future.exception()
    if isinstance(err, AckdBenchError):
        return f"{type(err).__name__}: {err}"
    lines = traceback.format_exception(type(err), err, future.traceback())
    return f"{type(err).__name__}: {err}\n" + "".join(lines[-4:-1]).rstrip()


def _start_client(*, workers: int, scheduler: str | None, gpus: int, threads: int = 1):
    import dask
    from distributed import Client, LocalCluster
    from distributed.comm import resolve_address

    if scheduler:
        try:
            resolve_address(scheduler)  # a malformed address would leave a Client that hangs on exit
            client = Client(scheduler, set_as_default=False, timeout=30)
        except (OSError, TimeoutError, ValueError, TypeError) as err:
            raise AckdBenchError(f"cannot reach the dask scheduler at {scheduler} ({err}); start it with "
                                 f"`dask scheduler` and workers with `dask worker {scheduler}`") from None
        return client, None
    resources = {"GPU": gpus} if gpus else None
    # One run per worker at a time; workers listen on loopback only.
    # dask's nannies start workers with OMP_NUM_THREADS=1 and MALLOC_TRIM_THRESHOLD_=65536 (its
    # pre-spawn defaults, meant for pandas-style tasks). For training both hurt: a resnet18 step at
    # 64 px, batch 64, took 0.77 s in such a worker on 2 cores against 0.45 s with glibc's default
    # trimming and the run's thread count (torch.set_num_threads in the task does not undo the
    # OpenMP setting). The workers get the run's thread count and glibc's default; a variable set
    # in the environment still wins, as dask has it.
    env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), "MALLOC_TRIM_THRESHOLD_": None,
           **{name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                               resources=resources)
    try:
        return Client(cluster, set_as_default=False), cluster
    except BaseException:
        cluster.close()
        raise


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def sweep_table(grid_runs: list[Run], out: Path, fmt: str = "md", metric: str = "oa") -> str | None:
    """The ``ackd-bench table`` of the grid's RunResults present in ``out`` (None when there are none)."""
    from ackd_bench.benchmark.results import load_run_results
    from ackd_bench.benchmark.table import aggregate, render_table

    files = [Path(out) / r.filename for r in grid_runs if (Path(out) / r.filename).exists()]
    if not files:
        return None
    return render_table(aggregate(load_run_results(files), metric=metric), fmt)
