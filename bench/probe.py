"""What the bundled vision encoder's tokens say about a scene: linear probes (trained here, in seconds) that
read each 3x3 cell's colour and shape (or "empty") from the frozen tokens of scenes it never saw, then the
shape and colour under one patch from that patch's token alone (the patches near a shape's cell centre, as
`tiny-cells` labels them; then every patch, as `tiny-shapes` labels them), with the shapes' confusion. A
probe near 100% means the LM has what it needs in the tokens; a low one means the encoder is the bottleneck.

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

from assistant.synth.scenes import SHAPES, Scene  # noqa: E402
from assistant.train.vision import cell_labels, inside_labels, patch_labels, scene_pixels  # noqa: E402
from encoders.siglip import load_vision  # noqa: E402

TRAIN_SHARE = 0.8


Scenes = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def scenes(count: int, size: int, grid: int, seed: int) -> Scenes:
    """Pixels [n, 3, size, size], per-cell labels [n, 9, 2] and two kinds of per-patch labels [n, grid * grid, 2]
    (shape, colour: 0 empty, else 1 + index): near a cell's centre (-100 for the other patches) and inside."""
    rng = np.random.default_rng(seed)
    pixels, cells, patches, inside = [], [], [], []
    for _ in range(count):
        scene = Scene.draw(rng)
        t = float(rng.uniform(0, 2))
        cells.append(cell_labels(scene))
        patches.append(patch_labels(scene, grid))
        inside.append(inside_labels(scene, grid, t))
        pixels.append(scene_pixels(scene, size, rng, t))
    return torch.stack(pixels), torch.stack(cells), torch.stack(patches), torch.stack(inside)


def probe(features: torch.Tensor, labels: torch.Tensor, classes: int, steps: int = 300,
          lr: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear read-out of each of labels' K positions from features [n, F] (labels [n, K], the first
    TRAIN_SHARE of rows to fit it); returns the held-out rows' (predictions, truth), each [m, K]."""
    split = int(TRAIN_SHARE * len(features))
    mean, std = features[:split].mean(0), features[:split].std(0) + 1e-5
    x = (features - mean) / std
    positions = labels.shape[1]
    weight = torch.zeros(x.shape[1], positions * classes, requires_grad=True)
    bias = torch.zeros(positions * classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr, weight_decay=1e-4)
    for _ in range(steps):
        logits = (x[:split] @ weight + bias).view(-1, positions, classes)
        loss = F.cross_entropy(logits.transpose(1, 2), labels[:split])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = (x[split:] @ weight + bias).view(-1, positions, classes).argmax(-1)
    return predicted, labels[split:]


def report(what: str, predicted: torch.Tensor, truth: torch.Tensor, classes: int) -> None:
    occupied = truth > 0
    print(f"  {what:<14}: right {100 * (predicted == truth).float().mean():5.1f}%, where a shape is "
          f"{100 * (predicted[occupied] == truth[occupied]).float().mean():5.1f}% (chance {100 / (classes - 1):.0f}%)")


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
    pixels, cells, patches, inside = scenes(args.scenes, vision.cfg.image_size, vision.cfg.grid, args.seed)
    with torch.no_grad():
        tokens = torch.cat([vision(pixels[i:i + 100]) for i in range(0, len(pixels), 100)])
    print(f"{args.model}: {args.scenes} scenes ({int(TRAIN_SHARE * 100)}% to fit the probes, the rest to test them)")
    labelled = patches[..., 0] >= 0
    for index, name in ((0, "shape"), (1, "colour")):
        classes = int(cells[..., index].max()) + 1
        report(f"{name} per cell", *probe(tokens.flatten(1), cells[..., index], classes), classes)
        # the patches in scene order, so the first TRAIN_SHARE of them come from the probe's training scenes
        near = probe(tokens[labelled], patches[..., index][labelled][:, None], classes, lr=1e-2)
        report(f"{name} per patch", *near, classes)
        every = probe(tokens.flatten(0, 1), inside[..., index].flatten()[:, None], classes, lr=1e-2)
        report(f"{name} inside", *every, classes)
        if name == "shape":
            for what, (predicted, truth) in (("near a cell's centre", near), ("every patch", every)):
                confusion(what, predicted, truth, classes)


def confusion(what: str, predicted: torch.Tensor, truth: torch.Tensor, classes: int) -> None:
    table = torch.zeros(classes, classes, dtype=torch.long)
    table.index_put_((truth.flatten(), predicted.flatten()), torch.ones(truth.numel(), dtype=torch.long),
                     accumulate=True)
    print(f"    shape per patch ({what}), rows the truth, columns the probe's answer:")
    print(" " * 12 + "".join(f"{label:>9}" for label in ("empty", *SHAPES)))
    for row, label in zip(table, ("empty", *SHAPES)):
        print(f"    {label:<8}" + "".join(f"{n:>9}" for n in row.tolist()))


if __name__ == "__main__":
    main()
