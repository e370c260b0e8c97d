"""The training path: EMA codebooks, dead-code restart, quantizer dropout, gradients."""
from __future__ import annotations

import torch

from codec import MimiCodec, preset
from codec.quantizer import EuclideanCodebook


def test_ema_moves_entries_to_cluster_means():
    torch.manual_seed(0)
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    book = EuclideanCodebook(dim=2, size=3, decay=0.8, dead_threshold=0.0)
    for _ in range(60):
        x = centres[torch.randint(0, 3, (90,))] + 0.1 * torch.randn(90, 2)
        book.update(x, book.encode(x))
    found = book.embedding[book.encode(centres)]
    assert sorted(book.encode(centres).tolist()) == [0, 1, 2]
    assert torch.allclose(found, centres, atol=0.1)


def test_dead_codes_are_restarted_on_batch_vectors():
    torch.manual_seed(0)
    book = EuclideanCodebook(dim=2, size=4, decay=0.5, dead_threshold=0.5, check_every=1)
    data = torch.randn(64, 2) * 0.01 + torch.tensor([10.0, 10.0])
    book.update(data, torch.zeros(64, dtype=torch.long))  # first call: initialise from the data
    book.embedding_sum[3] = torch.tensor([-1000.0, -1000.0])  # an entry nothing is near
    restarted = 0.0
    for _ in range(5):
        restarted += book.update(data, book.encode(data))
    assert restarted > 0
    assert (book.embedding - torch.tensor([10.0, 10.0])).abs().max() < 1.0, "every entry now sits on the data"


def test_quantizer_dropout_varies_codebooks_in_training_only():
    torch.manual_seed(0)
    model = MimiCodec(preset("test"))
    wav = torch.randn(2, 1, 2 * model.frame_size) * 0.1
    model.train()
    counts = {model(wav).codes.shape[1] for _ in range(12)}
    assert len(counts) > 1 and counts <= set(range(2, preset("test").n_q + 1))
    model.eval()
    with torch.no_grad():
        assert model(wav).codes.shape[1] == preset("test").n_q


def test_gradients_reach_encoder_through_the_quantizer():
    torch.manual_seed(0)
    model = MimiCodec(preset("test")).train()
    wav = torch.randn(2, 1, 2 * model.frame_size) * 0.1
    out = model(wav)
    loss = (out.audio - wav).abs().mean() + out.commit_loss
    loss.backward()
    first_conv = model.encoder.layers[0].conv.weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert model.quantizer.first.codebooks[0].embedding_sum.grad is None  # EMA-only


def test_a_few_steps_reduce_reconstruction_loss():
    torch.manual_seed(0)
    model = MimiCodec(preset("test").with_(quantizer_dropout=False)).train()
    t = torch.arange(4 * model.frame_size) / model.sample_rate
    wav = (0.3 * torch.sin(2 * torch.pi * 220 * t))[None, None].repeat(2, 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(wav)
        loss = (out.audio - wav).abs().mean()
        opt.zero_grad()
        (loss + out.commit_loss).backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.7 * losses[0]
