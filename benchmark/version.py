"""The installed ackd-bench version, recorded in every artifact the toolkit writes."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """``ackd-bench``'s version, or ``0+unknown`` when running from a never-installed source tree."""
    try:
        return version("ackd-bench")
    except PackageNotFoundError:
        return "0+unknown"
