"""Stage: validate + split (§5.1). ``amnet data split`` is the same code with dataset-style flags."""

from __future__ import annotations

from amnet.config import SplitConfig
from amnet.data.split import run_split
from amnet.steps.common import resolve, run_tracked


def run_step(dataset: str, out: str, params: dict, parent_run_id: str = "") -> dict:
    cfg = resolve(SplitConfig, params)
    return run_tracked("split", cfg, lambda log: run_split(dataset, out, cfg), parent_run_id,
                       io={"dataset": dataset, "out": out})


def main(argv: list[str] | None = None) -> int:
    from amnet.data.split import main as split_main

    return split_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
