"""The real models' sizes on one device, ours next to the reference (PyPI moshi) on the same random weights.

One table, also written as JSON (--json):
1. the device's copy bandwidth and, from it, the weight-read floor of an LM step (every weight read once);
2. an LM step in bf16 against batch size, ours (eager) and the reference's `LMGen` at batch 1 and 8, with the
   ratio to the floor and the largest batch within the 80 ms frame; the peak host memory of loading the
   public-layout file straight into bf16;
3. Mimi encode + decode per frame at batch 1 and a larger batch, ours and the reference;
4. the so400m-448 vision tower, change-only against dense, at 0, 10 and 100% of patches changed, a number of
   sessions batched in one call (`SparseBatch`).

On a GPU the LM is the 7B Moshi configuration; on the CPU (`--device cpu`) a Moshi-architecture configuration
of about 1B parameters that fits this machine. Graphed (CUDA graph) steps are not measured here yet.

    .venv/bin/python bench/gpu.py --device cpu [--threads 2] [--json out/gpu.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.model.config import LMConfig, lm_preset  # noqa: E402
from bench.model import copy_bandwidth  # noqa: E402
from bench.model import time_steps as timed  # noqa: E402

FRAME_MS = 80.0
# A Moshi-architecture LM of about 1.2B parameters: the temporal transformer of a 2048-wide 16-layer model, a
# smaller depth transformer (per-codebook weights make it large otherwise); the reference can build it.
CPU_LM = lm_preset("moshi-7b").with_(dim=2048, num_heads=16, num_layers=16, hidden=5632, context=750,
                                     depformer_dim=512, depformer_heads=8, depformer_layers=4, depformer_hidden=1408)


def read_per_step(model: torch.nn.Module) -> int:
    """Weight bytes a step reads: all but the embedding tables, of which it reads a row each."""
    return sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "emb" not in n)


def lm_rows(cfg: LMConfig, device: torch.device, batches: list[int], reference: list[int], steps: int, sync,
            floor_bw: float) -> tuple[list[dict], dict]:
    from moshi.models.lm import LMGen

    from assistant.model.checkpoint import load_lm
    from tests.conformance.reference_lm import reference_lm, save_moshi_layout
    from tests.support.memory import load_peak

    with tempfile.TemporaryDirectory() as tmp:
        ref = reference_lm(cfg).to(torch.bfloat16)
        path = save_moshi_layout(ref, Path(tmp) / "model.safetensors", cfg.dep_q)
        load_mb = load_peak(path, cfg, "bfloat16", str(device)) / 2**20
        ours = load_lm(path, config=cfg, dtype=torch.bfloat16, device=device)
    ref = ref.to(device)
    floor_ms = 1000 * read_per_step(ours) / floor_bw
    info = {"parameters": sum(p.numel() for p in ours.parameters()), "floor_ms": floor_ms,
            "load_peak_host_mb": load_mb,
            "weights_bf16_mb": sum(p.numel() * 2 for p in ours.parameters()) / 2**20}
    rows = []
    for batch in batches:
        user = torch.randint(0, cfg.card, (batch, cfg.n_user), device=device)
        state = ours.init_state(batch)
        state["seed"][:] = torch.arange(batch)
        row = {"batch": batch, "ours_ms": timed(lambda: ours.step(user, state), steps, 2, sync)}
        if batch in reference:
            gen = LMGen(ref, temp=cfg.temperature, temp_text=cfg.text_temperature, top_k=cfg.top_k,
                        top_k_text=cfg.text_top_k)
            with gen.streaming(batch):
                row["reference_ms"] = timed(lambda: gen.step(user[:, :, None]), steps, 2, sync)
        row["x_floor"] = row["ours_ms"] / floor_ms
        rows.append(row)
        print(f"  LM batch {batch}: ours {row['ours_ms']:.1f} ms"
              + (f", reference {row['reference_ms']:.1f} ms" if "reference_ms" in row else ""), flush=True)
    return rows, info


def codec_rows(device: torch.device, batches: list[int], steps: int, sync) -> list[dict]:
    from moshi.models import loaders

    from codec import load_codec, preset
    from tests.conformance.reference import reference_mimi, save_public_layout

    cfg = preset("mimi")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mimi.safetensors"
        torch.manual_seed(0)
        save_public_layout(reference_mimi(cfg), path)
        ours = load_codec(path, config=cfg, device=device)
        ref = loaders.get_mimi(str(path), device=device)
    rows = []
    for batch in batches:
        frame = torch.randn(batch, 1, cfg.frame_size, device=device) * 0.1
        enc, dec = ours.init_encode_state(batch), ours.init_decode_state(batch)
        row = {"batch": batch, "ours_ms": timed(lambda: ours.decode_step(ours.encode_step(frame, enc), dec),
                                                steps, 2, sync)}
        with ref.streaming(batch):
            row["reference_ms"] = timed(lambda: ref.decode(ref.encode(frame)), steps, 2, sync)
        rows.append(row)
        print(f"  Mimi batch {batch}: ours {row['ours_ms']:.1f} ms, reference {row['reference_ms']:.1f} ms",
              flush=True)
    return rows


def vision_rows(device: torch.device, sessions: int, repeats: int, sync) -> list[dict]:
    from encoders import SiglipVision, SparseBatch, SparseSettings, vision_preset

    cfg = vision_preset("so400m-448")
    torch.manual_seed(0)
    model = SiglipVision(cfg).to(device=device, dtype=torch.bfloat16).eval()
    rng = np.random.default_rng(0)
    base = (rng.random((cfg.image_size, cfg.image_size, 3)) * 255).astype(np.uint8)
    batch = SparseBatch(model, SparseSettings(refresh_every=0), sessions)  # every session in one call per layer
    batch.update({row: base for row in range(sessions)})
    warmup = 1 if device.type == "cuda" else 0
    rows = []
    for changed in (0.0, 0.1, 1.0):
        frame = base.copy()
        side = int(round(cfg.image_size * changed ** 0.5))
        frame[:side, :side] = 255 - frame[:side, :side]

        def step() -> None:  # there and back: each update sees the change
            batch.update({row: frame for row in range(sessions)})
            batch.update({row: base for row in range(sessions)})
        sparse_ms = timed(step, repeats, warmup, sync) / 2
        pixels = torch.zeros(sessions, 3, cfg.image_size, cfg.image_size, device=device, dtype=torch.bfloat16)
        dense_ms = timed(lambda: model(pixels), repeats, warmup, sync)
        rows.append({"changed": changed, "sessions": sessions, "sparse_ms": sparse_ms, "dense_ms": dense_ms})
        print(f"  vision {changed:.0%} changed x {sessions}: change-only {sparse_ms:.0f} ms, dense {dense_ms:.0f} ms",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the CPU run)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the table here as JSON")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU here")
    gpu = device.type == "cuda"
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if gpu else f"{platform.processor() or platform.machine()} CPU, " \
                                                                 f"{args.threads} threads"
    cfg = lm_preset("moshi-7b") if gpu else CPU_LM
    batches, reference = ([1, 8, 16, 32, 64, 128], [1, 8]) if gpu else ([1, 2, 4], [1])
    print(f"{name}: measuring ...", flush=True)
    with torch.inference_mode():
        bw = copy_bandwidth(device, sync)
        lm, info = lm_rows(cfg, device, batches, reference, args.steps, sync, bw)
        mimi = codec_rows(device, [1, 64] if gpu else [1, 8], 10 if gpu else 5, sync)
        vision = vision_rows(device, 16 if gpu else 2, 3 if gpu else 1, sync)
    best = max([r["batch"] for r in lm if r["ours_ms"] < FRAME_MS], default=0)
    table = {"device": name, "torch": torch.__version__, "copy_bandwidth_gb_s": bw / 1e9, "lm": lm, "lm_info": info,
             "largest_batch_within_frame": best, "mimi": mimi, "vision": vision}
    print(f"\n{name}; torch {torch.__version__}; copy bandwidth {bw / 1e9:.1f} GB/s (read + written)")
    print(f"LM: {info['parameters'] / 1e9:.2f} B parameters, bf16; weight-read floor {info['floor_ms']:.1f} ms/step; "
          f"loading the public file into bf16 peaked at {info['load_peak_host_mb']:.0f} MB of host memory "
          f"(weights {info['weights_bf16_mb']:.0f} MB)")
    print(f"{'batch':>5} {'ours ms':>8} {'ref ms':>8} {'ref/ours':>8} {'x floor':>8} {'in 80 ms':>8}")
    for r in lm:
        ref = r.get("reference_ms")
        print(f"{r['batch']:>5} {r['ours_ms']:8.1f} {ref if ref else float('nan'):8.1f} "
              f"{ref / r['ours_ms'] if ref else float('nan'):8.2f} {r['x_floor']:8.2f} "
              f"{'yes' if r['ours_ms'] < FRAME_MS else 'no':>8}")
    print(f"largest batch within the frame: {best}")
    print(f"{'Mimi batch':>10} {'ours ms':>8} {'ref ms':>8}")
    for r in mimi:
        print(f"{r['batch']:>10} {r['ours_ms']:8.1f} {r['reference_ms']:8.1f}")
    print(f"{'vision changed':>14} {'sessions':>8} {'change-only ms':>14} {'dense ms':>8}")
    for r in vision:
        print(f"{r['changed']:>14.0%} {r['sessions']:>8} {r['sparse_ms']:14.0f} {r['dense_ms']:8.0f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
