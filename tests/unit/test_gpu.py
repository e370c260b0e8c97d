"""GPU paths; skipped where no CUDA device is present (CI has none)."""
from __future__ import annotations

import pytest
import torch

from assistant.model.config import lm_preset
from assistant.model.lm import StreamingLM
from codec import MimiCodec, preset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_lm_step_on_gpu_matches_cpu():
    torch.manual_seed(0)
    cpu = StreamingLM(lm_preset("test")).eval()
    gpu = StreamingLM(lm_preset("test")).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda()
    codes = torch.randint(0, 24, (2, 2))
    a = cpu.step(codes, cpu.init_state(2), greedy=True)
    b = gpu.step(codes.cuda(), gpu.init_state(2), greedy=True)
    assert torch.allclose(a.text_logits, b.text_logits.cpu(), atol=1e-4)


def test_codec_streams_on_gpu():
    torch.manual_seed(0)
    model = MimiCodec(preset("test")).cuda().eval()
    wav = torch.randn(1, 1, 2 * model.frame_size, device="cuda") * 0.1
    with torch.inference_mode():
        codes = model.encode(wav)
        state = model.init_encode_state(1)
        streamed = torch.cat([model.encode_step(wav[..., i * model.frame_size:(i + 1) * model.frame_size], state)
                              for i in range(2)], dim=-1)
    assert torch.equal(codes, streamed)


def test_graphed_engine_steps_match_eager_ones_on_the_gpu():
    import numpy as np

    from assistant.engine import CudaGraphs, Engine

    torch.manual_seed(0)
    codec = MimiCodec(preset("test")).cuda().eval()
    lm = StreamingLM(lm_preset("test").with_(card=codec.cfg.bins, vision_dim=0, vision_tokens=0)).cuda().eval()
    tone = (0.3 * np.sin(np.arange(48_000) / 48_000 * 2 * np.pi * 220)).astype(np.float32)
    runs = []
    for capture in (None, CudaGraphs()):
        engine = Engine(codec, lm, max_sessions=4, capture=capture, greedy=True)
        sessions = [engine.add_session(seed=i) for i in range(3)]
        for s in sessions:
            s.push_audio(tone, 48_000)
        for _ in range(8):
            engine.step()
        runs.append([np.concatenate([s.pop_output().audio for _ in range(8)]) for s in sessions])
    for eager, graphed in zip(*runs):
        np.testing.assert_allclose(eager, graphed, atol=1e-5)
