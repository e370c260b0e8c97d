"""One module per `tutti` command group; each exposes `register(subparsers)`."""
from __future__ import annotations

import argparse

from ..loader import DEVICE_HELP, DTYPE_HELP, DTYPES, MODEL_HELP


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --device and --dtype: what `serve`, `ask` and `desktop` run, where and at what precision."""
    parser.add_argument("--model", default="tiny", help=MODEL_HELP)
    parser.add_argument("--device", help=DEVICE_HELP)
    parser.add_argument("--dtype", choices=list(DTYPES), help=DTYPE_HELP)
