"""What the bundled vision encoder's tokens say about a scene: linear probes (trained here, in seconds) that
read each 3x3 cell's colour and shape (or "empty") from the frozen tokens of scenes it never saw. A probe
near 100% means the LM has what it needs in the tokens; a low one means the encoder is the bottleneck.

    .venv/bin/python bench/probe.py [--scenes 3000] [--model assistant/weights/tutti-tiny/vision.safetensors]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.synth.scenes import Scene  # noqa: E402
from assistant.train.vision import cell_labels, scene_pixels  # noqa: E402
from encoders.siglip import load_vision  # noqa: E402

TRAIN_SHARE = 0.8


def scenes(count: int, size: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pixels [n, 3, size, size] and per-cell labels [n, 9] (0 empty, else 1 + colour / shape index)."""
    rng = np.random.default_rng(seed)
    pixels, labels = [], []
    for _ in range(count):
        scene = Scene.draw(rng)
        labels.append(cell_labels(scene))
        pixels.append(scene_pixels(scene, size, rng))
    labels = torch.stack(labels)
    return torch.stack(pixels), {"colour": labels[..., 1], "shape": labels[..., 0]}


def probe(features: torch.Tensor, labels: torch.Tensor, steps: int = 300) -> tuple[float, float]:
    """A linear read-out per cell; returns (held-out cells right, held-out occupied cells right)."""
    split = int(TRAIN_SHARE * len(features))
    mean, std = features[:split].mean(0), features[:split].std(0) + 1e-5
    x = (features - mean) / std
    classes = int(labels.max()) + 1
    weight = torch.zeros(x.shape[1], 9 * classes, requires_grad=True)
    bias = torch.zeros(9 * classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=1e-3, weight_decay=1e-4)
    for _ in range(steps):
        logits = (x[:split] @ weight + bias).view(-1, 9, classes)
        loss = F.cross_entropy(logits.transpose(1, 2), labels[:split])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = (x[split:] @ weight + bias).view(-1, 9, classes).argmax(-1)
    truth = labels[split:]
    occupied = truth > 0
    return (predicted == truth).float().mean().item(), (predicted[occupied] == truth[occupied]).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=3000)
    parser.add_argument("--model", default=str(ROOT / "assistant/weights/tutti-tiny/vision.safetensors"))
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vision = load_vision(args.model).eval()
    pixels, labels = scenes(args.scenes, vision.cfg.image_size, args.seed)
    with torch.no_grad():
        tokens = torch.cat([vision(pixels[i:i + 100]) for i in range(0, len(pixels), 100)]).flatten(1)
    print(f"{args.model}: {tokens.shape[1]} features per scene, {args.scenes} scenes "
          f"({int(TRAIN_SHARE * 100)}% to fit the probes, the rest to test them)")
    for name, y in labels.items():
        cells, occupied = probe(tokens, y)
        print(f"  {name:<6}: cells right {100 * cells:5.1f}%, occupied cells right {100 * occupied:5.1f}% "
              f"(chance on occupied cells {100 / (int(y.max())):.0f}%)")


if __name__ == "__main__":
    main()
