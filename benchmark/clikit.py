"""What every `ackd-bench` command shares: one-line errors, seed and option parsing.

Each command group lives next to the code it drives (``curation/cli.py``, ``benchmark/dataset/cli.py``,
``benchmark/run_cli.py``, ``benchmark/report_cli.py``, ``leaderboard/cli.py``); ``benchmark/cli.py``
assembles them into ``ackd-bench``. Heavy imports live inside the commands so --help is instant.
"""

from __future__ import annotations

import functools
import sys

import click

from ackd_bench.benchmark.errors import AckdBenchError

MAX_SEED = 2**32 - 1  # benchmark.boundary.MAX_SEED (kept here: --help imports nothing heavy)
DEBUG_ENV = "ACKD_BENCH_DEBUG"  # set to 1 to see the traceback behind a one-line error


def one_line(err: BaseException) -> str | None:
    """The one-line message of an error caused by bad input or bad state; None: an internal bug."""
    if isinstance(err, AckdBenchError):
        return str(err)
    if isinstance(err, OSError):
        import errno

        where = f" {err.filename}" if err.filename else ""
        fixes = {errno.EACCES: "check its permissions", errno.EPERM: "check its permissions",
                 errno.ENOSPC: "free disk space and rerun (finished stages are kept)",
                 errno.EROFS: "write somewhere writable", errno.ENOENT: "check the path"}
        fix = fixes.get(err.errno, "check the path and rerun")
        return f"{err.strerror or err}:{where}; {fix}"
    if isinstance(err, RecursionError):
        return "an input is nested too deeply to process; check the files you passed"
    if isinstance(err, MemoryError):
        return "out of memory; use a smaller dataset, batch or fewer workers"
    if type(err).__name__ == "DecompressionBombError":  # PIL, without importing it here
        return f"image refused as a decompression bomb ({err}); use a smaller image"
    if isinstance(err, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
    return None


def friendly_errors(fn):
    """Turn errors from bad input or bad state into one line on stderr and exit status 1.

    The project's own errors (`AckdBenchError`) and the system's (unreadable, unwritable or full
    disks, images too large, input nested too deeply, out of memory) never show a traceback;
    other exceptions are bugs and do. ``ACKD_BENCH_DEBUG=1`` shows the traceback of every error.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import os

        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("interrupted; rerun the same command to resume", err=True)
            sys.exit(130)
        except click.exceptions.ClickException:
            raise
        except Exception as err:
            message = one_line(err)
            if message is None or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            raise click.ClickException(message) from err

    return wrapper


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"seeds are comma-separated integers, e.g. 0,1,2 (got {text!r})") from None
    if not seeds or any(s < 0 or s > MAX_SEED for s in seeds):
        raise click.BadParameter(f"give at least one seed in 0..{MAX_SEED}, e.g. 0,1,2")
    return seeds


def parse_options(pairs: tuple[str, ...]) -> dict:
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"--option takes KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options



def echo_or_write(text: str, out) -> None:
    """Print ``text``, or write it atomically to ``out`` (a path) and say so."""
    if out is None:
        click.echo(text)
        return
    from ackd_bench.benchmark.dataset.files import atomic_write_text

    atomic_write_text(out, text)
    click.echo(f"wrote {out}")
