"""LM step time against batch size: ours next to the reference LMGen (PyPI moshi) on the same weights.

The `tiny` LM preset (vision adapters off, so both models do the same work), random fp32 weights,
sampling on, one step = temporal transformer + text sample + depth transformer for every codebook, on
the CPU. The real model sizes (7B on a GPU, about 1B on the CPU) are `bench/gpu.py`'s.

    .venv/bin/python bench/model.py [--batch 1 2 4 8 16 32 64] [--steps 20] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.model.config import lm_preset  # noqa: E402

FRAME_MS = 80.0


def time_steps(step, steps: int, warmup: int, sync=lambda: None) -> float:
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench_cpu(batches: list[int], steps: int, threads: int) -> None:
    from moshi.models.lm import LMGen

    from assistant.model.checkpoint import load_lm
    from tests.conformance.reference_lm import reference_lm, save_moshi_layout

    torch.set_num_threads(threads)
    # tutti-tiny's FFN width (512 at dim 192) is one the reference cannot build (it treats a feed-forward of
    # 4 x dim apart); 528 is the nearest it can. Both sample, as the reference's LMGen does (tutti-tiny
    # itself decodes greedily).
    cfg = lm_preset("tiny").with_(vision_dim=0, vision_tokens=0, hidden=528, temperature=0.8, text_temperature=0.7)
    ref = reference_lm(cfg)
    path = ROOT / "out" / "bench-lm-tiny.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_moshi_layout(ref, path, cfg.dep_q)
    ours = load_lm(path, config=cfg)
    params = sum(p.numel() for p in ours.parameters())
    print(f"CPU, {threads} threads; LM preset tiny without vision ({params / 1e6:.1f} M parameters), fp32, sampling")
    print(f"{'batch':>5} {'ours ms':>8} {'ref ms':>8} {'ref/ours':>8} {'ours ms/session':>15} {'fits 80 ms':>10}")
    for batch in batches:
        user = torch.randint(0, cfg.card, (batch, cfg.n_user))
        state = ours.init_state(batch)
        state["seed"][:] = torch.arange(batch)
        ours_ms = time_steps(lambda: ours.step(user, state), steps, 3)
        gen = LMGen(ref, temp=cfg.temperature, temp_text=cfg.text_temperature, top_k=cfg.top_k, top_k_text=cfg.text_top_k)
        with gen.streaming(batch), torch.no_grad():
            ref_ms = time_steps(lambda: gen.step(user[:, :, None]), steps, 3)
        print(f"{batch:>5} {ours_ms:8.2f} {ref_ms:8.2f} {ref_ms / ours_ms:8.2f} {ours_ms / batch:15.3f} "
              f"{'yes' if ours_ms < FRAME_MS else 'no':>10}", flush=True)


def copy_bandwidth(dev: torch.device, sync, size: int = 2**30) -> float:
    """Bytes read + written per second by a copy of `size` bytes on the device."""
    src = torch.empty(size, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    return 2 * size / (time_steps(lambda: dst.copy_(src), 10, 2, sync) / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with torch.inference_mode():
        bench_cpu(args.batch, args.steps, args.threads)


if __name__ == "__main__":
    main()
