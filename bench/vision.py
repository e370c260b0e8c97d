"""Change-only vision encoding: cost against the fraction of changed patches, next to a dense encode.

so400m-448 (1024 tokens, 27 layers) with random weights. For each fraction of changed patches the
encoder first sees a base frame, then a frame where that fraction of patches (chosen at random) is
redrawn; we report FLOPs (counted) and wall time of that update relative to a dense encode of the same
frame, and the fidelity (cosine of every token against the dense encode).

    .venv/bin/python bench/vision.py [--preset so400m-448] [--threads 2] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders import SiglipVision, SparseEncoder, to_pixels, vision_preset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="so400m-448")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0, 1, 5, 10, 25, 50, 100])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; nothing measured")
        return
    torch.set_num_threads(args.threads)
    cfg = vision_preset(args.preset)
    torch.manual_seed(0)
    model = SiglipVision(cfg).to(args.device).eval()
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    rng = np.random.default_rng(0)
    base = (rng.random((cfg.image_size, cfg.image_size, 3)) * 255).astype(np.uint8)
    p, g = cfg.patch_size, cfg.grid

    def dense(frame):
        with torch.inference_mode():
            sync()
            start = time.perf_counter()
            out = model(to_pixels(frame, cfg.image_size)[None].to(args.device))[0]
            sync()
            return out, time.perf_counter() - start

    dense(base)  # warm-up
    print(f"{args.preset}: {cfg.tokens} tokens, {cfg.layers} layers, {sum(x.numel() for x in model.parameters()) / 1e6:.0f} M "
          f"parameters, random weights; {args.device}, {args.threads} threads; default SparseSettings")
    print(f"{'changed %':>9} {'FLOPs/dense':>11} {'time/dense':>10} {'sparse ms':>9} {'dense ms':>8} "
          f"{'min cos':>8} {'p1 cos':>7} {'median cos':>10}")
    for fraction in args.fractions:
        enc = SparseEncoder(model)
        enc.update(base)
        frame = base.copy()
        count = round(fraction / 100 * cfg.tokens)
        for idx in rng.choice(cfg.tokens, size=count, replace=False):
            r, c = divmod(int(idx), g)
            frame[r * p:(r + 1) * p, c * p:(c + 1) * p] = (rng.random((p, p, 3)) * 255).astype(np.uint8)
        sync()
        result = enc.update(frame)
        sync()
        expected, dense_s = dense(frame)
        cos = torch.nn.functional.cosine_similarity(result.tokens, expected, dim=-1).float().cpu()
        print(f"{fraction:9.0f} {result.recomputed:11.3f} {result.seconds / dense_s:10.3f} {1000 * result.seconds:9.1f} "
              f"{1000 * dense_s:8.1f} {cos.min():8.4f} {cos.quantile(0.01):7.4f} {cos.median():10.4f}", flush=True)


if __name__ == "__main__":
    main()
