"""Streaming codec speed: ours against the reference Mimi (PyPI moshi), same random weights, same run.

For the full `mimi` configuration, each (implementation, threads, batch) point runs
in its own process (clean thread setting and peak memory): streaming encode +
decode of one 80 ms frame per step, median over the timed steps after a warm-up.

    .venv/bin/python bench/codec.py [--frames 40] [--threads 1 2] [--batch 1 8] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_weights(path: Path) -> None:
    import torch

    from codec import preset
    from tests.conformance.reference import reference_mimi, save_public_layout

    torch.manual_seed(0)
    save_public_layout(reference_mimi(preset("mimi")), path)


def measure(impl: str, weights: Path, threads: int, batch: int, frames: int, warmup: int, device: str) -> dict:
    import torch

    from codec import load_codec, preset

    torch.set_num_threads(threads)
    cfg = preset("mimi")
    wav = (torch.randn(batch, 1, cfg.frame_size * (frames + warmup)) * 0.1).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        if impl == "ours":
            model = load_codec(weights, config=cfg, device=device)
            enc, dec = model.init_encode_state(batch), model.init_decode_state(batch)

            def step(chunk):
                return model.decode_step(model.encode_step(chunk, enc), dec)
            ctx = None
        else:
            from moshi.models import loaders

            model = loaders.get_mimi(str(weights), device=device)
            ctx = model.streaming(batch)
            ctx.__enter__()
            step = lambda chunk: model.decode(model.encode(chunk))  # noqa: E731
        for i in range(frames + warmup):
            chunk = wav[..., i * cfg.frame_size:(i + 1) * cfg.frame_size]
            sync()
            start = time.perf_counter()
            step(chunk)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        peak_gpu = torch.cuda.max_memory_allocated() / 2**20
    frame_ms = 1000 * cfg.frame_size / cfg.sample_rate
    med = 1000 * statistics.median(times)
    out = {"impl": impl, "threads": threads, "batch": batch, "median_ms": med,
           "p90_ms": 1000 * statistics.quantiles(times, n=10)[-1], "rtf": med / frame_ms,
           "peak_rss_mb": peak}
    if device == "cuda":
        out["peak_gpu_mb"] = peak_gpu
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40, help="timed frames per point")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--worker", nargs=4, metavar=("IMPL", "WEIGHTS", "THREADS", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, weights, threads, batch = args.worker
        print(json.dumps(measure(impl, Path(weights), int(threads), int(batch), args.frames, args.warmup, args.device)))
        return
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device here; nothing measured")
            return
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "mimi-random.safetensors"
        build_weights(weights)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; device {args.device}; "
              f"full mimi config, random weights; streaming encode+decode per 80 ms frame")
        print(f"{'threads':>7} {'batch':>5} {'ours ms':>8} {'ref ms':>8} {'ref/ours':>8} {'ours RTF':>8} "
              f"{'ours/row':>8} {'ours MB':>8} {'ref MB':>7}")
        for threads in args.threads:
            for batch in args.batch:
                res = {}
                for impl in ("ours", "reference"):
                    cmd = [sys.executable, __file__, "--frames", str(args.frames), "--warmup", str(args.warmup),
                           "--device", args.device, "--worker", impl, str(weights), str(threads), str(batch)]
                    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
                    if done.returncode:
                        sys.exit(f"{impl} failed:\n{done.stderr}")
                    res[impl] = json.loads(done.stdout.strip().splitlines()[-1])
                o, r = res["ours"], res["reference"]
                print(f"{threads:>7} {batch:>5} {o['median_ms']:8.1f} {r['median_ms']:8.1f} "
                      f"{r['median_ms'] / o['median_ms']:8.2f} {o['rtf']:8.3f} {o['median_ms'] / batch:8.1f} "
                      f"{o['peak_rss_mb']:8.0f} {r['peak_rss_mb']:7.0f}", flush=True)


if __name__ == "__main__":
    main()
