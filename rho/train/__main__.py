"""Command line: ``python -m rho.train --config run.yaml [key=value ...]`` (also under torchrun)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from rho.train.config import TrainConfig, merge_overrides, parse_overrides
from rho.train.loop import train


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, print the run summary as JSON (rank 0)."""
    ap = argparse.ArgumentParser(prog="python -m rho.train", description=__doc__)
    ap.add_argument("--config", help="YAML file with TrainConfig fields")
    ap.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides (YAML values), e.g. objective=slm selection.ratio=0.6",
    )
    args = ap.parse_args(argv)
    if args.config:
        cfg = TrainConfig.from_yaml(args.config, args.overrides)
    else:
        cfg = TrainConfig.from_dict(merge_overrides({}, parse_overrides(args.overrides)))
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result.summary(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
