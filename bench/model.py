"""LM step time against batch size: ours next to the reference LMGen (PyPI moshi) on the same weights.

CPU: the `tiny` LM preset (vision adapters off, so both models do the same work),
random fp32 weights, sampling on, one step = temporal transformer + text sample +
depth transformer for every codebook. GPU (when one is at hand): the 7B Moshi
configuration with random bf16 weights, next to the memory-bandwidth floor
(weight bytes read per step / measured device copy bandwidth).

    .venv/bin/python bench/model.py [--batch 1 2 4 8 16 32 64] [--steps 20] [--threads 2] [--gpu]
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
from assistant.model.lm import StreamingLM  # noqa: E402

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


def copy_bandwidth(dev: torch.device, size: int = 2**30) -> float:
    """Bytes read + written per second by a device-to-device copy of `size` bytes."""
    src = torch.empty(size, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    copy_ms = time_steps(lambda: dst.copy_(src), 10, 2, torch.cuda.synchronize)
    return 2 * size / (copy_ms / 1000)


def bench_gpu(batches: list[int], steps: int) -> None:
    if not torch.cuda.is_available():
        print("GPU: no CUDA device here; 7B measurement skipped")
        return
    dev = torch.device("cuda")
    bandwidth = copy_bandwidth(dev)
    cfg = lm_preset("moshi-7b")
    torch.manual_seed(0)
    with torch.device(dev):
        model = StreamingLM(cfg).to(torch.bfloat16).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # Per step every weight is read once, except the embeddings (one row each) and the text
    # head, which are read whole; depth weights are read once per stream, all of which are per stream.
    emb_bytes = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "emb" in n)
    floor_ms = 1000 * (weight_bytes - emb_bytes) / bandwidth
    print(f"GPU {torch.cuda.get_device_name()}: 7B Moshi config, bf16, {weight_bytes / 1e9:.1f} GB of weights; "
          f"copy bandwidth {bandwidth / 1e9:.0f} GB/s -> floor {floor_ms:.2f} ms/step")
    print(f"{'batch':>5} {'ms/step':>8} {'x floor':>8} {'real time':>9}")
    best = 0
    for batch in batches:
        user = torch.randint(0, cfg.card, (batch, cfg.n_user), device=dev)
        state = model.init_state(batch)
        ms = time_steps(lambda: model.step(user, state), steps, 3, torch.cuda.synchronize)
        if ms < FRAME_MS:
            best = batch
        print(f"{batch:>5} {ms:8.2f} {ms / floor_ms:8.2f} {'yes' if ms < FRAME_MS else 'no':>9}", flush=True)
    print(f"sessions stepped in real time in one batch: {best} (largest batch measured under {FRAME_MS:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu", action="store_true", help="measure only the 7B config on the GPU")
    args = parser.parse_args()
    with torch.inference_mode():
        if args.gpu:
            bench_gpu(args.batch, args.steps)
        else:
            bench_cpu(args.batch, args.steps, args.threads)


if __name__ == "__main__":
    main()
