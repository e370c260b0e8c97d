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
