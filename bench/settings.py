"""How long and how big each measurement is, for a full run and for a `--quick` smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    quick: bool
    # Rounds in which every target takes its turn (bench/interleave.py).
    rounds: int
    # Request rows: seconds measured per turn, after `load_warmup` seconds of the same load.
    load_seconds: float
    load_warmup: float
    concurrencies: tuple[int, ...]
    ps_containers: int
    # Stream rows, in bytes.
    logs_bytes: int
    export_bytes: int
    pipe_bytes: int
    cycle_rounds: int
    cycle_seconds: float
    cycle_concurrency: int
    indexed_containers: int
    # How many of the indexed containers are inspected through the proxy before sampling.
    indexed_inspects: int
    held_streams: int
    ceiling_runs: int


FULL = Settings(
    quick=False,
    rounds=5,
    load_seconds=1.5,
    load_warmup=0.3,
    concurrencies=(1, 32),
    ps_containers=50,
    logs_bytes=200_000_000,
    export_bytes=200_000_000,
    pipe_bytes=100_000_000,
    cycle_rounds=3,
    cycle_seconds=6.0,
    cycle_concurrency=4,
    indexed_containers=10_000,
    indexed_inspects=10_000,
    held_streams=1000,
    ceiling_runs=3,
)

QUICK = Settings(
    quick=True,
    rounds=2,
    load_seconds=0.5,
    load_warmup=0.1,
    concurrencies=(1, 32),
    ps_containers=50,
    logs_bytes=20_000_000,
    export_bytes=20_000_000,
    pipe_bytes=10_000_000,
    cycle_rounds=1,
    cycle_seconds=2.0,
    cycle_concurrency=4,
    indexed_containers=10_000,
    indexed_inspects=1000,
    held_streams=1000,
    ceiling_runs=1,
)
