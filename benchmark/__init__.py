"""ackd-bench: benchmark."""


def __getattr__(name: str):
    """``load`` (and the types it returns) without importing torch for every CLI command."""
    if name in ("load", "Benchmark", "ChipDataset", "SameClassPartners"):
        from ackd_bench.benchmark.dataset import torchdata

        return getattr(torchdata, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
