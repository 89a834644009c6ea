"""Training curves as TensorBoard event files (``run --log-dir DIR``); optional, needs ``tensorboard``.

One folder per run (its RunResult's ``run_id``) under ``DIR``, one point per epoch: ``val/oa``,
``train/<term>`` for each loss term the method reports (and per-epoch method statistics such as
CTKD's temperature), ``time/train_s`` and ``time/epoch_s``. The same numbers stay in the
RunResult (``diagnostics.history``, ``timing``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ackd_bench.benchmark.errors import AckdBenchError

INSTALL_HINT = "pip install 'ackd-bench[tensorboard]' (or pip install tensorboard)"


class LogDirError(AckdBenchError):
    """``--log-dir`` cannot be served (tensorboard missing, the path is a file)."""


def check_log_dir(log_dir: Path) -> None:
    """Fail before any training when event files cannot be written to ``log_dir``."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise LogDirError(f"--log-dir needs the tensorboard package; {INSTALL_HINT}") from None
    if Path(log_dir).exists() and not Path(log_dir).is_dir():
        raise LogDirError(f"--log-dir {log_dir} is a file; give a directory")


class EpochLogger:
    """A callable for `benchmark.train.fit`'s ``on_epoch``: writes each history row as scalars."""

    def __init__(self, log_dir: Path, run_id: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(log_dir) / run_id
        self._writer = SummaryWriter(log_dir=str(self.path))

    def __call__(self, row: dict[str, Any]) -> None:
        epoch = int(row["epoch"])
        for key, value in row.items():
            if key == "epoch":
                continue
            tag = {"val_oa": "val/oa", "train_s": "time/train_s", "epoch_s": "time/epoch_s"}.get(key, f"train/{key}")
            self._writer.add_scalar(tag, float(value), epoch)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
