"""Our LM against the reference Moshi LMModel / LMGen (PyPI moshi) on the same random weights."""
from __future__ import annotations

import pytest
import torch

from assistant.model.checkpoint import load_lm
from assistant.model.config import lm_preset

pytest.importorskip("moshi")
from .reference_lm import reference_lm, save_moshi_layout  # noqa: E402

CFG = lm_preset("test").with_(vision_dim=0, vision_tokens=0)
STEPS = 24  # more than twice the attention context of the test config


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ref = reference_lm(CFG)
    path = save_moshi_layout(ref, tmp_path_factory.mktemp("lm") / "model.safetensors", CFG.dep_q)
    return ref, load_lm(path, config=CFG)


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return ((a - b).norm() / b.norm()).item() < tol


@torch.no_grad()
def test_teacher_forced_logits_match_over_many_steps(pair):
    ref, ours = pair
    B = 2
    gen = torch.Generator().manual_seed(0)
    state = ours.init_state(B)
    with ref.streaming(B):
        for t in range(STEPS):
            text = torch.randint(0, CFG.text_card + 1, (B, 1), generator=gen)
            audio = torch.randint(0, CFG.card + 1, (B, CFG.n_q), generator=gen)
            inputs = torch.cat([text, audio], dim=1)
            ref_out, ref_text = ref.forward_text(inputs[:, :, None])
            out = ours.temporal(inputs[:, :, None], state)
            assert close(ours.text_linear(out)[:, 0], ref_text[:, 0, 0]), f"text logits differ at step {t}"
            forced = torch.randint(0, CFG.card, (B, CFG.dep_q), generator=gen)
            kv = [{} for _ in ours.depformer]
            token = text[:, 0]
            with ref.depformer.streaming(B):
                for k in range(CFG.dep_q):
                    ref_logits = ref.forward_depformer(k, token[:, None, None], ref_out)[:, 0, 0]
                    assert close(ours.depth_logits(out, k, token, kv), ref_logits), f"codebook {k} at step {t}"
                    token = forced[:, k]


@torch.no_grad()
def test_greedy_generation_token_for_token(pair):
    from moshi.models.lm import LMGen

    ref, ours = pair
    B = 2
    gen = torch.Generator().manual_seed(1)
    user = torch.randint(0, CFG.card, (STEPS, B, CFG.n_user), generator=gen)
    lm_gen = LMGen(ref, use_sampling=False)
    state = ours.init_state(B)
    matched, texts = 0, []
    with lm_gen.streaming(B):
        for t in range(STEPS):
            expected = lm_gen.step(user[t][:, :, None])
            got = ours.step(user[t], state, greedy=True)
            texts.append(got.text)
            if expected is None:
                assert not got.valid.any()
                continue
            assert got.valid.all()
            assert torch.equal(got.audio, expected[:, 1:, 0]), f"audio differs at step {t}"
            # The reference hands text back aligned with the audio; ours emits it at once (live captions).
            assert torch.equal(texts[t - CFG.max_delay], expected[:, 0, 0]), f"text differs at step {t}"
            matched += 1
    assert matched == STEPS - CFG.max_delay


def test_a_public_file_loads_straight_into_bfloat16(tmp_path):
    """A bf16 public-layout Moshi file loads into a bf16 model without a float32 copy of the weights on the way:
    the load's peak memory (a fresh process each) is well under that of loading the same file into float32."""
    from tests.support.memory import load_peak

    cfg = CFG.with_(dim=512, num_heads=8, num_layers=8, hidden=1408, context=50, text_card=4000, card=1024,
                    n_q=16, dep_q=8, delays=lm_preset("moshi-7b").delays, depformer_dim=256, depformer_heads=4,
                    depformer_hidden=704)
    ref = reference_lm(cfg).to(torch.bfloat16)
    fp32_bytes = 4 * sum(p.numel() for p in ref.parameters())
    path = save_moshi_layout(ref, tmp_path / "model.safetensors", cfg.dep_q)
    del ref
    grown = {dtype: load_peak(path, cfg, dtype) for dtype in ("float32", "bfloat16")}
    print(f"peak memory of the load: float32 {grown['float32'] / 2**20:.0f} MB, bfloat16 "
          f"{grown['bfloat16'] / 2**20:.0f} MB (weights {fp32_bytes / 2**20:.0f} MB in float32)")
    assert grown["bfloat16"] < grown["float32"] - fp32_bytes / 4
