"""The `ackd-bench` command line: the command groups, assembled.

Each group lives next to the code it drives; see ``benchmark/clikit.py`` for what they share.
"""

from __future__ import annotations

import click

from ackd_bench.benchmark.dataset.cli import export_cmd, import_paper_cmd, inspect_cmd
from ackd_bench.benchmark.report_cli import compare_cmd, table_cmd
from ackd_bench.benchmark.run_cli import methods_cmd, run_cmd, sweep_cmd
from ackd_bench.curation.cli import build_dataset, demo_catalog, presets_cmd
from ackd_bench.leaderboard.cli import leaderboard_group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ackd-bench")
def main() -> None:
    """ackd-bench: benchmarks for Asymmetric Cross-modal Knowledge Distillation.

    \b
    Quick start (offline, on the embedded demo world):
      ackd-bench build-dataset --catalog demo --out data/demo
      ackd-bench inspect data/demo
    """


for command in (build_dataset, presets_cmd, demo_catalog,  # curation
                inspect_cmd, import_paper_cmd, export_cmd,  # the dataset
                methods_cmd, run_cmd, sweep_cmd,  # training
                table_cmd, compare_cmd,  # reporting
                leaderboard_group):
    main.add_command(command)


if __name__ == "__main__":
    main()
