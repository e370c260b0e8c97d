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
