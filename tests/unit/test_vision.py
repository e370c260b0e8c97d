"""Change-only sparse encoding: exactness at threshold 0, static scenes, moving objects, fidelity, bad frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders import (
    FrameError,
    SiglipVision,
    SparseBatch,
    SparseEncoder,
    SparseSettings,
    load_vision,
    save_vision,
    to_pixels,
    vision_preset,
)

CFG = vision_preset("test")  # 56 px, 8 x 8 patches of 7 px


@pytest.fixture(scope="module")
def model() -> SiglipVision:
    torch.manual_seed(0)
    return SiglipVision(CFG).eval()


def scene(x: int, y: int = 14, noise: float = 0.0, seed: int = 0, size: int = 56) -> np.ndarray:
    """A textured background with a red square at (x, y); optional camera noise (uint8 levels)."""
    rng = np.random.default_rng(seed)
    frame = (np.random.default_rng(42).random((size, size, 3)) * 200).astype(np.float64)
    frame[y:y + 12, x:x + 12] = (0, 0, 255)  # BGR red
    frame += rng.normal(0, noise, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def dense(model, frame):
    with torch.no_grad():
        return model(to_pixels(frame, CFG.image_size)[None])[0]


def test_threshold_zero_equals_dense_exactly(model):
    enc = SparseEncoder(model, SparseSettings(threshold=0, pixel_threshold=0, refresh_every=0))
    for x in (5, 9, 9, 20, 33):
        result = enc.update(scene(x))
        assert torch.equal(result.tokens, dense(model, scene(x)))


def test_static_noisy_scene_recomputes_nothing_after_the_first_frame(model):
    enc = SparseEncoder(model)
    assert enc.update(scene(10, noise=2, seed=0)).recomputed == 1.0
    for seed in range(1, 6):
        result = enc.update(scene(10, noise=2, seed=seed))
        assert result.recomputed == 0 and result.changed.numel() == 0 and result.per_layer == [0] * CFG.layers


def test_moving_object_recomputes_where_it_was_and_where_it_is(model):
    enc = SparseEncoder(model, SparseSettings(threshold=0.0))
    enc.update(scene(7))
    result = enc.update(scene(28))
    grid = CFG.grid

    def cells(x):  # patches the 12-px square covers at (x, 14)
        return {(r * grid + c) for r in range(14 // 7, (14 + 11) // 7 + 1) for c in range(x // 7, (x + 11) // 7 + 1)}
    changed = set(result.changed.tolist())
    assert cells(7) | cells(28) <= changed
    assert len(changed) < CFG.tokens / 2


def test_fidelity_on_a_moving_clip_at_default_settings(model):
    enc = SparseEncoder(model)
    worst, costs = [], []
    for t, x in enumerate(list(range(4, 40, 3)) + [40] * 4):
        frame = scene(x, y=10 + t % 5, noise=2, seed=t)
        result = enc.update(frame)
        cos = torch.nn.functional.cosine_similarity(result.tokens, dense(model, frame), dim=-1)
        worst.append(cos.min().item())
        costs.append(result.recomputed)
    print(f"min cosine per frame: {np.round(worst, 4).tolist()}; cost per frame: {np.round(costs, 3).tolist()}")
    assert min(worst) >= 0.98
    assert np.mean(costs[1:]) < 0.6


def test_budget_caps_recomputed_tokens(model):
    enc = SparseEncoder(model, SparseSettings(threshold=0.0, budget=3))
    enc.update(scene(5))
    result = enc.update(scene(30))
    assert max(result.per_layer) <= 3 and result.per_layer[0] == 3


def test_refresh_every_n_frames(model):
    enc = SparseEncoder(model, SparseSettings(refresh_every=3))
    flags = [enc.update(scene(10)).refreshed for _ in range(8)]
    assert flags == [True, False, False, False, True, False, False, False]


def test_pooling_reduces_tokens_and_maps_changes(model):
    enc = SparseEncoder(model, SparseSettings(threshold=0.0, pool=2))
    first = enc.update(scene(5))
    assert first.tokens.shape == (CFG.tokens // 4, CFG.hidden)
    result = enc.update(scene(30))
    assert 0 < result.changed.numel() < CFG.tokens // 4 and result.changed.max() < CFG.tokens // 4


@pytest.mark.parametrize("frame, message", [
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((1, 1, 3), np.uint8), "at least 8x8"),
    (np.zeros((9000, 10, 3), np.uint8), "above 8192"),
    (np.zeros((20, 20, 3), np.int64), "uint8, uint16 or float"),
    (np.zeros((20, 20, 2), np.uint8), "H x W"),
    (np.full((20, 20, 3), np.nan, np.float32), "NaN"),
    ("not an array", "numpy array"),
])
def test_bad_frames(model, frame, message):
    with pytest.raises(FrameError, match=message):
        SparseEncoder(model).update(frame)


def test_frame_layouts_agree(model):
    bgr = scene(10, size=80)
    wide = np.concatenate([np.zeros((80, 20, 3), np.uint8), bgr, np.zeros((80, 20, 3), np.uint8)], axis=1)
    bgra = np.concatenate([bgr, np.full((80, 80, 1), 255, np.uint8)], axis=2)
    base = to_pixels(bgr, CFG.image_size)
    assert torch.allclose(to_pixels(wide, CFG.image_size), base)  # centre crop
    assert torch.allclose(to_pixels(bgra, CFG.image_size), base)
    assert torch.allclose(to_pixels(bgr.astype(np.float32) / 255, CFG.image_size), base, atol=1e-6)
    grey = to_pixels(bgr[..., 0], CFG.image_size)
    assert torch.allclose(grey[0], grey[1])


def test_own_format_round_trip(model, tmp_path):
    save_vision(model, tmp_path / "v.safetensors")
    loaded = load_vision(tmp_path / "v.safetensors")
    assert loaded.cfg == CFG and torch.equal(dense(loaded, scene(3)), dense(model, scene(3)))


@pytest.mark.parametrize("settings", [SparseSettings(), SparseSettings(threshold=0.0, budget=3),
                                      SparseSettings(threshold=0, pixel_threshold=0, refresh_every=0)])
def test_sessions_encoded_together_get_what_each_gets_alone(model, settings):
    """One SparseBatch call per frame for every session that has one, as the engine encodes its sessions:
    each session's tokens, changed tokens and per-layer counts are those of its own encoder, whatever the others
    do (static, moving, refreshing, or sending a frame the encoder refuses)."""
    plans = [[scene(5), scene(5, noise=2, seed=1), scene(5, noise=2, seed=2), scene(5)],  # a still scene
             [scene(7), scene(18), scene(28), scene(40)],  # a moving square
             [scene(30), scene(12), None, scene(12)],  # skips a frame
             [scene(20), np.zeros((2, 2, 3), np.uint8), scene(21), scene(22)]]  # a bad frame in between
    alone = [SparseEncoder(model, settings) for _ in plans]
    together = SparseBatch(model, settings, sessions=len(plans) + 1)  # a spare row, never used
    for t in range(4):
        got = together.update({row: plan[t] for row, plan in enumerate(plans) if plan[t] is not None})
        for row, plan in enumerate(plans):
            if plan[t] is None:
                assert row not in got
                continue
            try:
                own = alone[row].update(plan[t])
            except FrameError as e:
                assert isinstance(got[row], FrameError) and str(got[row]) == str(e)
                continue
            mine = got[row]
            assert torch.allclose(mine.tokens, own.tokens, atol=1e-5)
            assert torch.equal(mine.changed, own.changed) and mine.per_layer == own.per_layer
            assert (mine.recomputed, mine.refreshed) == (own.recomputed, own.refreshed)
