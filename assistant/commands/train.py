"""`tutti train <stage> --recipe tiny`: the recipes that make the bundled model (and, on GPUs, larger ones).

Runs resume from the checkpoint in --out; start several processes with
`torchrun --nproc-per-node N -m assistant.cli train ...` for data-parallel training.
`tutti average RUN_A RUN_B --out DIR` averages two runs' weights.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from core.errors import TuttiError

from ..train.average import AVERAGED, average_runs
from ..train.run import STAGES, train

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    optional = lambda value: Path(value) if value else None  # noqa: E731
    train(args.stage, args.recipe, Path(args.out), args.seed, args.device, args.steps, args.until, args.threads,
          args.workers, args.restart, optional(args.plot), Path(args.codec), Path(args.vision), optional(args.init))
    return 0


def run_average(args: argparse.Namespace) -> int:
    names = average_runs(Path(args.a), Path(args.b), Path(args.out), args.weight)
    log.info("averaged %s into %s", ", ".join(names), args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a stage of the bundled model from its recipe (resumable)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=STAGES, help="codec, then vision, then lm (which needs the trained codec)")
    p.add_argument("--recipe", default="tiny", help="recipe name (default: tiny)")
    p.add_argument("--out", default="runs/tiny", help="checkpoint, loss log and exported weights (default: runs/tiny)")
    p.add_argument("--steps", type=int, help="train to this many steps instead of the recipe's")
    p.add_argument("--until", type=int, help="stop at this step (the schedule stays the same); run again to go on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes that make the training data: they draw the batches ahead of the steps, and for "
                        "the lm render its dialogues (default: 0, all in the training process)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument("--plot", help="write the loss plot (SVG) here at every checkpoint, e.g. docs/training/codec.svg")
    p.add_argument("--codec", default="assistant/weights/tutti-tiny/codec.safetensors",
                   help="lm: the trained codec that tokenizes the dialogues; codec with a decoder-only recipe: "
                        "the codec whose decoder is fine-tuned")
    p.add_argument("--vision", default="assistant/weights/tutti-tiny/vision.safetensors",
                   help="lm: the trained vision encoder whose tokens the LM attends to")
    p.add_argument("--init", help="vision, lm: start from these weights (e.g. an earlier run's vision.safetensors or "
                                  "lm.safetensors) instead of random ones; a checkpoint in --out still takes precedence")
    p.set_defaults(func=run, errors=(TuttiError, ValueError, OSError))

    p = sub.add_parser("average", help="average the weights of two runs of one lineage",
                       description=f"Writes (1 - w) * A + w * B of each of {', '.join(AVERAGED)} that A holds "
                                   "into --out (configs must match).")
    p.add_argument("a", help="a run's --out or a model directory")
    p.add_argument("b", help="another run of the same model (e.g. one warm-started from A)")
    p.add_argument("--out", required=True, help="directory for the averaged files")
    p.add_argument("--weight", type=float, default=0.5, help="B's share w (default: 0.5)")
    p.set_defaults(func=run_average, errors=(ValueError, OSError))
