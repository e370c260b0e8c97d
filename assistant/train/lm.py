"""Recipe (3): the fused streaming LM on synthetic dialogues, with cross-attention to the scene.

Each example is one turn laid out as the model's streams at the codec's frame
rate: the user's question (a training voice, reverberant and noisy) in the user
stream, then, after a short pause, the assistant's answer in its own audio
stream with its words in the text stream, one word-level token on the frame
where the word's audio begins, padding elsewhere. The assistant's words are
rendered one by one and padded to whole frames, so a word's codes barely depend
on where it falls, which makes the speech easy for a small model to learn.
The codec and the vision encoder are frozen (trained by recipes 1 and 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec.checkpoint import load_codec
from codec.model import MimiCodec
from encoders.frames import to_pixels
from encoders.siglip import SiglipVision, load_vision

from ..model.config import LMConfig, lm_preset
from ..model.lm import StreamingLM
from ..model.checkpoint import save_lm
from ..model.tokenizer import TextTokenizer
from ..progress import progress
from ..synth.dialogue import draw_turn, vocabulary
from ..synth.scenes import Scene
from ..synth.speech import ASSISTANT, TRAIN_VOICES, Voice, dither, espeak, room
from .loop import Schedule, Stage

PAD_WEIGHT = 0.2  # most text frames are padding; the words matter more
GAP_FRAMES = 0  # silent frames between the assistant's words (each word already ends in a partial frame of silence)


@dataclass(frozen=True)
class LMRecipe:
    config: LMConfig
    schedule: Schedule
    batch: int
    frames: int  # steps per example
    examples: int  # dialogues generated once per run


RECIPES = {
    "tiny": LMRecipe(lm_preset("tiny"), Schedule(steps=4000, lr=1e-3, warmup=200, save_every=250), batch=16,
                     frames=96, examples=6000),
    "smoke": LMRecipe(lm_preset("test").with_(card=32, n_q=8, dep_q=4, delays=(0, 0, 1, 1, 1, 0, 1, 1, 1), text_card=80,
                                              vision_dim=32, vision_tokens=64),
                      Schedule(steps=4, lr=1e-3, warmup=1, save_every=2, log_every=2), batch=2, frames=40, examples=3),
}


def words(text: str) -> list[str]:
    return text.replace(",", " ").split()


def train_tokenizer(path: Path) -> TextTokenizer:
    """A word-level SentencePiece model over the domain's sentences (ids 0 unk, 1 bos, 2 eos, 3 pad)."""
    import sentencepiece

    path.parent.mkdir(parents=True, exist_ok=True)
    sentences = [" ".join(words(s)) for s in vocabulary()]
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(path.with_suffix("")), model_type="word",
        vocab_size=len({w for s in sentences for w in s.split()}) + 4, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        hard_vocab_limit=False, minloglevel=2)
    return TextTokenizer(path)


class Renderer:
    """Turns (scene, turn, voice) into the model's streams with the frozen codec and vision encoder."""

    def __init__(self, codec: MimiCodec, vision: SiglipVision, tokenizer: TextTokenizer, cfg: LMConfig, frames: int):
        self.codec, self.vision, self.tokenizer, self.cfg, self.frames = codec, vision, tokenizer, cfg, frames
        self.sr, self.frame = codec.cfg.sample_rate, codec.cfg.frame_size
        self._words: dict[str, torch.Tensor] = {}

    def word(self, w: str) -> torch.Tensor:
        """The assistant's rendering of one word, padded with silence to whole frames."""
        if w not in self._words:
            wav = espeak(w, ASSISTANT, self.sr) * 0.7
            self._words[w] = F.pad(wav, (0, -len(wav) % self.frame + self.frame * GAP_FRAMES))
        return self._words[w]

    @torch.no_grad()
    def example(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One dialogue turn -> frames [1 + n_q, T] (int16) and vision tokens [N, D] (float16)."""
        scene = Scene.draw(rng)
        turn = draw_turn(scene, rng)
        total = self.frames * self.frame
        user = torch.zeros(total)
        question = room(espeak(turn.question, Voice.draw(rng, TRAIN_VOICES), self.sr), rng, self.sr)
        start = int(rng.uniform(0.2, 1.2) * self.sr)
        question = question[: total - start]
        user[start: start + len(question)] = question
        answer_frame = (start + len(question)) // self.frame + 1 + int(rng.integers(3, 7))
        model = torch.zeros(total)
        text = torch.full((self.frames,), self.cfg.text_padding_id, dtype=torch.long)
        at = answer_frame
        for w in words(turn.answer):
            clip = self.word(w)
            if at * self.frame + len(clip) > total:
                break
            ids = self.tokenizer.encode(w)
            text[at: at + len(ids)] = torch.tensor(ids)
            model[at * self.frame: at * self.frame + len(clip)] = clip
            at += len(clip) // self.frame
        audio = torch.stack([dither(model, rng), dither(user, rng)])[:, None]  # [2, 1, T]
        codes = self.codec.encode(audio)  # [2, K, frames]
        frames = torch.cat([text[None], codes[0], codes[1]])[:, : self.frames]
        pixels = to_pixels(scene.render(self.vision.cfg.image_size * 2, rng, t=float(rng.uniform(0, 2))),
                           self.vision.cfg.image_size)
        return frames.to(torch.int16), self.vision(pixels[None])[0].half()


def dialogues(recipe: LMRecipe, renderer: Renderer, seed: int, cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        return saved["frames"], saved["vision"]
    rng = np.random.default_rng([seed, 3])
    made = [renderer.example(rng) for _ in progress(range(recipe.examples), recipe.examples, "rendering dialogues")]
    frames, vision = torch.stack([m[0] for m in made]), torch.stack([m[1] for m in made])
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"frames": frames, "vision": vision}, cache)
    return frames, vision


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
    lm: StreamingLM = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    device = next(model.parameters()).device
    frames, vision = batch[0].to(device).long(), batch[1].to(device).float()
    text_logits, audio_logits = model(frames, vision)
    targets = lm.targets(frames)
    text_target = targets[:, 0]
    weight = torch.where(text_target == lm.cfg.text_padding_id, PAD_WEIGHT, 1.0)
    text_ce = F.cross_entropy(text_logits.transpose(1, 2), text_target, reduction="none")
    audio_ce = F.cross_entropy(audio_logits.permute(0, 3, 1, 2), targets[:, 1:], ignore_index=-100)
    return {"text": (text_ce * weight).sum() / weight.sum(), "audio": audio_ce}


def stage(recipe_name: str, seed: int, out: Path, codec: Path) -> Stage:
    recipe = RECIPES[recipe_name]
    tokenizer = train_tokenizer(out / "tokenizer.model")
    vision = load_vision(out / "vision.safetensors") if (out / "vision.safetensors").exists() else None
    if vision is None:
        raise FileNotFoundError(f"train the vision stage first: {out / 'vision.safetensors'} is missing")
    renderer = Renderer(load_codec(codec).eval(), vision.eval(), tokenizer, recipe.config, recipe.frames)
    frames, tokens = dialogues(recipe, renderer, seed, out / "lm-dialogues.pt")

    def batch(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.from_numpy(np.random.default_rng([seed, step, rank, 4]).integers(len(frames), size=recipe.batch))
        return frames[pick], tokens[pick]

    return Stage(model=StreamingLM(recipe.config), schedule=recipe.schedule, batch=batch, loss=lm_loss,
                 export=lambda model: save_lm(model, out / "lm.safetensors"))
