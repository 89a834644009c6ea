"""Error types raised by ackd-bench; each message is one line a user can act on."""

from __future__ import annotations

from pathlib import Path

BUILD_COMMAND = "ackd-bench build-dataset --catalog demo --out {path}"


class AckdBenchError(Exception):
    """Base class of every error ackd-bench raises on purpose.

    The message is a single actionable line, so the CLI can print it as is and exit non-zero.
    """


class DatasetNotFoundError(AckdBenchError):
    """No dataset where one was expected.

    Args:
        path: Where the dataset was looked for.
        reason: What was found instead (e.g. "no dataset.json").
    """

    def __init__(self, path: Path | str, reason: str = "no dataset.json") -> None:
        self.path = Path(path)
        command = BUILD_COMMAND.format(path=self.path)
        super().__init__(
            f"no ackd-bench dataset at {self.path} ({reason}); build one with `{command}`"
        )


class DatasetCorruptError(AckdBenchError):
    """A dataset exists but one of its files is missing, altered or inconsistent.

    Args:
        file: The offending file (absolute or relative to the dataset root).
        reason: What is wrong with it (checksum mismatch, missing, bad schema, shape mismatch).
    """

    def __init__(self, file: Path | str, reason: str) -> None:
        self.file = Path(file)
        self.reason = reason
        super().__init__(f"corrupt dataset file {self.file}: {reason}; rebuild the dataset")


class DatasetExistsError(AckdBenchError):
    """The output path holds something that is not an ackd-bench dataset, so it is left alone."""


class DatasetSchemaError(AckdBenchError, ValueError):
    """Inputs handed to the dataset writer do not follow the dataset format (names the field and the rule)."""
