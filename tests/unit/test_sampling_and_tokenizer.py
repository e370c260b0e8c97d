"""Seeded sampling, and the SentencePiece tokenizer on a model trained here."""
from __future__ import annotations

import pytest
import torch

from assistant.model.sampling import row_uniform, sample
from assistant.model.tokenizer import TextTokenizer
from core.errors import CheckpointError


def test_greedy_is_argmax():
    logits = torch.tensor([[0.1, 3.0, -1.0], [5.0, 0.0, 4.9]])
    assert sample(logits, 0.8, 2, None, None).tolist() == [1, 0]
    assert sample(logits, 0.0, 2, torch.tensor([1, 2]), torch.tensor([0, 0])).tolist() == [1, 0]


def test_noise_depends_only_on_the_row_seed_and_counter():
    a = row_uniform(torch.tensor([3, 4, 3]), torch.tensor([10, 10, 11]), torch.arange(50).expand(3, 50))
    b = row_uniform(torch.tensor([3]), torch.tensor([10]), torch.arange(50)[None])
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], a[1]) and not torch.equal(a[0], a[2])
    assert 0 < a.min() and a.max() < 1 and abs(a.mean().item() - 0.5) < 0.1


def test_sampling_follows_softmax_within_top_k():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))[None].repeat(4000, 1)
    seeds = torch.arange(4000)
    drawn = sample(logits, 1.0, 3, seeds, torch.zeros(4000, dtype=torch.long))
    freq = torch.bincount(drawn, minlength=4).float() / 4000
    assert freq[3] == 0  # outside the top 3
    expected = torch.tensor([0.5, 0.3, 0.15]) / 0.95
    assert torch.allclose(freq[:3], expected, atol=0.03)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    import sentencepiece

    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(["hello I can see and hear you", "it is red", "I see two blue circles",
                                 "the green square is on the left", "what colour is the star"] * 20))
    sentencepiece.SentencePieceTrainer.Train(
        input=str(corpus), model_prefix=str(folder / "spm"), vocab_size=36, model_type="unigram",
        pad_id=3, unk_id=1, bos_id=-1, eos_id=2, user_defined_symbols=["<epad>"], minloglevel=2)
    return TextTokenizer(folder / "spm.model", padding_id=3, end_padding_id=0)


def test_tokenizer_round_trip_and_caption_pieces(tokenizer):
    ids = tokenizer.encode("it is red")
    assert tokenizer.decode(ids) == "it is red"
    stream = [3, 3] + [ids[0], 3, 0] + ids[1:] + [3]  # padding interleaved, as the model emits it
    assert "".join(tokenizer.piece(t) for t in stream).strip() == "it is red"
    assert tokenizer.piece(10_000) == ""


def test_tokenizer_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        TextTokenizer(tmp_path / "absent.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="SentencePiece"):
        TextTokenizer(bad)
