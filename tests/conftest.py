from __future__ import annotations

import pytest
import torch

from codec import MimiCodec, preset
from codec.config import CodecConfig


def randomize_codebooks(model: MimiCodec, seed: int = 0) -> MimiCodec:
    """Spread the codebooks like the latents they quantize, so that codes vary on random weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        wav = torch.randn(1, 1, model.frame_size * 4, generator=gen) * 0.1
        latent = model.downsample(model.encoder_transformer(model.encoder(wav)))
        for half in (model.quantizer.first, model.quantizer.rest):
            scale = half.input_proj(latent).std()
            for book in half.codebooks:
                book.embedding_sum.copy_(torch.randn(book.embedding_sum.shape, generator=gen) * scale)
                book.cluster_usage.fill_(1.0)
    return model


HEADS = {"seanet": preset("test"),
         "istft": preset("test").with_(decoder_head="istft", istft_hop=80, istft_n_fft=320)}


@pytest.fixture(params=sorted(HEADS))
def codec_model(request) -> MimiCodec:
    """The test codec with each output head: Mimi's SEANet decoder and the iSTFT head of tutti-tiny."""
    return random_codec(HEADS[request.param])


def random_codec(config: CodecConfig | None = None) -> MimiCodec:
    """A codec (default: the `test` preset) with seeded random weights and spread-out codebooks."""
    torch.manual_seed(0)
    return randomize_codebooks(MimiCodec(config or preset("test")).eval())
