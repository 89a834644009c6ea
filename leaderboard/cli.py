"""The `leaderboard` command group: pack, init, validate, submit, render."""

from __future__ import annotations

from pathlib import Path

import click

from ackd_bench.benchmark.clikit import friendly_errors


@click.group("leaderboard")
def leaderboard_group() -> None:
    """Share results: pack runs into a submission, check it, and add it to a board (a git repo).

    \b
    Example:
      ackd-bench leaderboard pack results/dkd --out dkd.json --name "A. Author" --affiliation Lab \\
          --code-url https://github.com/me/dkd --licence CC-BY-4.0
      ackd-bench leaderboard init --board board/ --dataset data/demo
      ackd-bench leaderboard validate dkd.json --board board/
      ackd-bench leaderboard submit dkd.json --board board/
    """


@leaderboard_group.command("pack")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Submission file to write.")
@click.option("--name", required=True, help="Submitter's name.")
@click.option("--affiliation", default="", help="Submitter's affiliation.")
@click.option("--code-url", required=True, help="https:// URL of the code that produced the runs.")
@click.option("--paper-url", default="", help="https:// URL of the paper, if any.")
@click.option("--licence", required=True, help="Licence of the submitted results, e.g. CC-BY-4.0.")
@click.option("--id", "submission_id", default=None,
              help="Submission id (a-z, 0-9, -). [default: from method, pair and dataset]")
@friendly_errors
def leaderboard_pack(results_dir, out, name, affiliation, code_url, paper_url, licence, submission_id) -> None:
    """Bundle every seed (at least 3) of one method in RESULTS_DIR into a submission JSON.

    \b
    Example:
      ackd-bench run --method dkd --arch resnet18 --seeds 0,1,2 --out results/dkd
      ackd-bench leaderboard pack results/dkd --out dkd.json --name "A. Author" --affiliation Lab \\
          --code-url https://github.com/me/dkd --licence CC-BY-4.0
    """
    from ackd_bench.leaderboard.submission import pack

    path = pack(results_dir, out=out, name=name, affiliation=affiliation, code_url=code_url, paper_url=paper_url,
                licence=licence, submission_id=submission_id)
    click.echo(f"wrote {path}")


@leaderboard_group.command("init")
@click.option("--board", required=True, type=click.Path(path_type=Path), help="Board folder to create.")
@click.option("--dataset", "datasets", required=True, multiple=True, type=click.Path(path_type=Path),
              help="A dataset the board accepts (repeat for several).")
@friendly_errors
def leaderboard_init(board, datasets) -> None:
    """Create a board: submissions/ and datasets.json (with each dataset's true test labels).

    \b
    Example:
      ackd-bench leaderboard init --board board/ --dataset data/demo && git -C board init
    """
    from ackd_bench.leaderboard.board import init

    click.echo(f"created board {init(board, list(datasets))}")


@leaderboard_group.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--board", type=click.Path(path_type=Path), default=None,
              help="Also check against this board: true labels, protocol, duplicates.")
@friendly_errors
def leaderboard_validate(file, board) -> None:
    """Check a submission: schema, hashes, every metric recomputed from the predictions.

    \b
    Example:
      ackd-bench leaderboard validate dkd.json --board board/
    """
    from ackd_bench.leaderboard.submission import validate

    bundle = validate(file, board)
    against = f" against {board}" if board else " (metrics checked against the true labels only with --board)"
    click.echo(f"{file}: valid submission {bundle['id']!r}{against}")


@leaderboard_group.command("submit")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--board", required=True, type=click.Path(path_type=Path), help="The board to add it to.")
@friendly_errors
def leaderboard_submit(file, board) -> None:
    """Validate a submission against the board and add it, rendered, as one transaction under the board's lock.

    Killed at any point, the board has the submission rendered or not at all; the next command
    completes it, and a retry of the same file is accepted or recognised as already on the board.

    \b
    Example:
      ackd-bench leaderboard submit dkd.json --board board/ && git -C board add -A
    """
    from ackd_bench.leaderboard.board import add_submission

    path, added = add_submission(file, board)
    click.echo(f"added {path}" if added else f"{path} is already on the board with this content; nothing changed")


@leaderboard_group.command("render")
@click.argument("board_dir", required=False, type=click.Path(path_type=Path))
@click.option("--board", default=None, type=click.Path(path_type=Path), help="The board to render.")
@friendly_errors
def leaderboard_render(board_dir, board) -> None:
    """Render the board's submissions as LEADERBOARD.md and site/index.html.

    \b
    Example:
      ackd-bench leaderboard render --board board/
      ackd-bench leaderboard render board/
    """
    if (board_dir is None) == (board is None):
        raise click.UsageError("give the board once: `render BOARD` or `render --board BOARD`")
    board = board or board_dir
    from ackd_bench.leaderboard.render import render_board

    render_board(board)
    click.echo(f"rendered {board}")
