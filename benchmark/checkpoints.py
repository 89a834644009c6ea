"""Training checkpoints: written in the background, stamped with the run's protocol, checked on resume."""

from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ackd_bench.benchmark.errors import AckdBenchError

if TYPE_CHECKING:
    from ackd_bench.benchmark.method import Method
    from ackd_bench.benchmark.protocol import Profile


class CheckpointError(AckdBenchError):
    """A checkpoint cannot be resumed: empty or damaged, another run's, or written under another protocol."""


class CheckpointWriter:
    """Writes checkpoints on a background thread so the training loop does not wait for the disk.

    :meth:`submit` copies the state to host memory at once (the run goes on changing it), then
    the thread writes it atomically; a submit waits for the previous write, and :meth:`close`
    for the last one, re-raising a failed write.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def submit(self, path: Path, method: nn.Module, opt, gen: torch.Generator, state: dict,
               protocol: dict[str, Any] | None = None) -> None:
        # state["best"] holds host copies that are replaced, never changed in place: shared, not copied again
        rest = {k: v for k, v in state.items() if k != "best"}
        payload = _to_host({"method": method.state_dict(), "optimizer": opt.state_dict(), "rng": gen.get_state(),
                            "torch_rng": torch.get_rng_state(), "state": rest, "protocol": protocol or {}})
        payload["state"]["best"] = state["best"]
        self._wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending = self._pool.submit(save_checkpoint, path, payload)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def _to_host(obj: Any) -> Any:
    """A deep copy of ``obj`` whose tensors are fresh CPU tensors (safe to write while training goes on)."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, _to_host(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v) for v in obj)
    return obj


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (a temp name, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


CHECKPOINT_KEYS = ("method", "optimizer", "rng", "torch_rng", "state", "protocol")
STATE_KEYS = frozenset({"epoch", "best_oa", "best_epoch", "best", "history"})
RESUME_FIX = "delete it or run without --resume"


def profile_protocol(profile: Profile) -> dict[str, Any]:
    """A profile's part of a run's protocol: its name and every setting but ``epochs``.

    ``epochs`` is left out: a checkpoint of the first epochs of a longer run of the same protocol
    may be continued further (the runner records the epochs it asks for).
    """
    return plain_json({"profile": profile.name,
                       **{k: v for k, v in dataclasses.asdict(profile).items() if k not in ("name", "epochs")}})


def fit_protocol(method: Method, profile: Profile, *, seed: int, student_px: int, teacher_px: int,
                 pairing: str, n_train: int) -> dict[str, Any]:
    """What :func:`~ackd_bench.benchmark.train.fit` itself knows of a run's protocol, as plain JSON values."""
    cfg = method.cfg
    return profile_protocol(profile) | plain_json({
        "seed": seed, "student_px": student_px, "teacher_px": teacher_px, "pairing": pairing,
        "method_class": type(method).__name__,
        "method_config": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {},
        "n_classes": method.info.n_classes, "train_rows": n_train})


def plain_json(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists, odd objects their text), so it compares."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded on the CPU without unpickling code.

    Raises:
        CheckpointError: the file is empty or damaged, not a training checkpoint, or records no
            protocol (an older ackd-bench wrote it).
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as err:  # noqa: BLE001 - a damaged file raises EOFError, UnpicklingError, IndexError, ...
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise CheckpointError(f"checkpoint {path} is empty or not a checkpoint ({why}); {RESUME_FIX}") from err
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in CHECKPOINT_KEYS):
        if isinstance(ckpt, dict) and all(k in ckpt for k in CHECKPOINT_KEYS if k != "protocol"):
            raise CheckpointError(f"checkpoint {path} records no protocol (an older ackd-bench wrote it), so "
                                  f"resuming it could mix two protocols; {RESUME_FIX}")
        raise CheckpointError(f"checkpoint {path} is not an ackd-bench training checkpoint; {RESUME_FIX}")
    return ckpt


def check_protocol(path: Path, recorded: Any, protocol: dict[str, Any], *, only_given: bool = False) -> None:
    """Refuse to resume ``path`` (whose protocol is ``recorded``) under another ``protocol``.

    Args:
        only_given: compare the fields of ``protocol`` only (a check before all of it is known,
            e.g. before the teacher is trained).

    Raises:
        CheckpointError: naming the differing fields, their values, and the fix.
    """
    if only_given and isinstance(recorded, dict):
        recorded = {k: recorded.get(k, "unset") for k in protocol}
    differ = protocol_differences(recorded, plain_json(protocol))
    if differ:
        raise CheckpointError(f"checkpoint {path} was written under another protocol ({differ}); run without "
                              "--resume to start afresh, or resume with the flags it was started with")


def load_checkpoint(path: Path, method: nn.Module, opt, gen: torch.Generator,
                    protocol: dict[str, Any]) -> dict:
    """Restore ``method``, ``opt``, ``gen`` and torch's RNG from ``path``; returns the loop's state.

    Raises:
        CheckpointError: the file is empty or damaged, was written under another ``protocol``
            (the differing fields are named), or its weights do not fit ``method``.
    """
    ckpt = read_checkpoint(path)
    check_protocol(path, ckpt["protocol"], protocol)
    try:
        method.load_state_dict(ckpt["method"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = ckpt["state"]
        if not isinstance(state, dict) or not STATE_KEYS <= state.keys():
            raise KeyError(f"its state lacks {', '.join(sorted(STATE_KEYS - set(state or {})))}")
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointError(f"checkpoint {path} does not fit this run ({why}); {RESUME_FIX}") from err
    return state


# Fields a user sets with a flag, named first when a checkpoint's protocol differs.
FLAG_FIELDS = ("profile", "precision", "method", "label", "options", "method_config", "teacher_arch", "student_arch",
               "seed", "epochs", "pairing", "dataset_fingerprint", "teacher_sha256")


def protocol_differences(recorded: Any, current: dict[str, Any], shown: int = 5) -> str:
    """``"profile: 'smoke' in the checkpoint, 'fast' now; ..."`` for each differing field ('' if none).

    Fields set by flags come first (:data:`FLAG_FIELDS`), then the rest by name; ``shown`` at most.
    """
    if not isinstance(recorded, dict):
        return "its protocol record is damaged"
    keys = sorted(set(recorded) | set(current),
                  key=lambda k: (FLAG_FIELDS.index(k) if k in FLAG_FIELDS else len(FLAG_FIELDS), k))
    parts = [f"{k}: {_brief(recorded.get(k, 'unset'))} in the checkpoint, {_brief(current.get(k, 'unset'))} now"
             for k in keys if recorded.get(k, "unset") != current.get(k, "unset")]
    if len(parts) > shown:
        parts = parts[:shown] + [f"and {len(parts) - shown} more"]
    return "; ".join(parts)


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
