"""Recipe (3): the fused streaming LM on synthetic dialogues, with cross-attention to the scene.

Each example is one turn laid out as the model's streams at the codec's frame
rate: the user's question (a training voice, reverberant and noisy) in the user
stream, then, after a short pause, the assistant's answer in its own audio
stream with its words in the text stream, one word-level token on the frame
where the word's audio begins, padding elsewhere. The assistant's words are
rendered one by one and padded to whole frames, so a word's codes barely depend
on where it falls, which makes the speech easy for a small model to learn.
The codec is frozen (trained by recipe 1); so is the vision encoder (recipe 2) unless
the recipe trains it along.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import multiprocessing
import os
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from codec.checkpoint import load_codec
from codec.model import MimiCodec
from core.audio import dither
from encoders.siglip import load_vision, save_vision

from ..model.checkpoint import load_lm, save_lm
from ..model.config import LMConfig, lm_preset
from ..model.lm import StreamingLM
from ..model.tokenizer import TextTokenizer
from ..synth.dialogue import draw_turn, vocabulary
from ..synth.scenes import Scene
from ..synth.speech import ASSISTANT, MORE_VOICES, TRAIN_VOICES, Voice, espeak, room, voiceless_wh, warp
from .loop import Schedule, Stage, unwrap
from .vision import PatchReadout, labelled_scenes, scene_pixels

PAD_WEIGHT = 0.2  # most text frames are padding; the words matter more


def _crc(text: str) -> str:
    return f"{zlib.crc32(text.encode()):08x}"


def _key(tag: str, write: Callable[[Any], str], always: bool = False) -> dict[str, Any]:
    """A `RenderSettings` field's part of the cache key: `tag` + write(value), left out at the field's default
    unless `always`."""
    return {"tag": tag, "write": write, "always": always}


@dataclass(frozen=True)
class RenderSettings:
    """How the users' questions are drawn and spoken. The fields name the cached dialogues (`key`), so a setting
    is added here once and its dialogues are cached apart; at its default it leaves the key, and with it the
    existing caches, as they were."""
    voices: tuple[str, ...] = field(default=TRAIN_VOICES, metadata=_key("v", lambda v: _crc(" ".join(v)), always=True))
    # (intent, weight) to draw the questions unevenly: `draw_turn`
    intents: tuple[tuple[str, float], ...] = field(default=(), metadata=_key("i", lambda v: _crc(repr(v))))
    # each question played up to this much slower or faster (`synth.speech.warp`); 0: as rendered
    warp: float = field(default=0.0, metadata=_key("w", "{:g}".format))
    # the share of questions whose wh-words start voiceless ("hw": `synth.speech.voiceless_wh`)
    wh: float = field(default=0.0, metadata=_key("h", "{:g}".format))

    def key(self) -> str:
        """The settings as they name a cache file, e.g. "vf46e463a-ifba65583-w0.12"."""
        return "-".join(f.metadata["tag"] + f.metadata["write"](getattr(self, f.name))
                        for f in dataclasses.fields(self) if f.metadata["always"] or getattr(self, f.name) != f.default)


@dataclass(frozen=True)
class LMRecipe:
    config: LMConfig
    schedule: Schedule
    batch: int
    frames: int  # steps per example
    examples: int  # dialogues generated once per run
    render: RenderSettings = RenderSettings()  # the users' voices and questions
    tune_vision: bool = False  # train the vision encoder with the LM instead of keeping it frozen
    # Weight of the vision recipe's per-patch read-out (`PatchReadout` on `readout_scenes` fresh scenes a step,
    # every covered patch labelled) while the encoder trains along: without it the LM's losses alone wear the
    # encoder's shape reading down (docs/training.md).
    readout: float = 0.0
    readout_scenes: int = 8


RECIPES = {
    # 20 000 dialogues: with far fewer the model learnt them by heart and answered new ones poorly (docs/history.md).
    # Batch 16 per process; tutti-tiny was trained by two processes (torchrun), 32 dialogues a step.
    "tiny": LMRecipe(lm_preset("tiny"), Schedule(steps=1400, lr=1e-3, warmup=150, save_every=200), batch=16,
                     frames=88, examples=20_000),
    # Goes on from "tiny"'s weights (--init) on three times the dialogues (the first 20 000 are the same).
    "tiny-more": LMRecipe(lm_preset("tiny"), Schedule(steps=2600, lr=5e-4, warmup=100, save_every=200), batch=16,
                          frames=88, examples=60_000),
    # One GPU (scripts/train-tiny-gpu.sh): goes on from "tiny-more"'s weights (--init) on new dialogues,
    # epochs at batch 64; --steps is set from the GPU's measured step rate to fit the time at hand.
    "tiny-gpu": LMRecipe(lm_preset("tiny"), Schedule(steps=6000, lr=7e-4, warmup=200, save_every=500, log_every=50),
                         batch=64, frames=88, examples=64_000),
    # Goes on from "tiny-gpu"'s weights (--init) on dialogues whose user stream is encoded whole, as the engine
    # encodes it (tiny-gpu's were pasted): a short fine-tuning that fits a CPU.
    "tiny-stream": LMRecipe(lm_preset("tiny"), Schedule(steps=1200, lr=3e-4, warmup=50, save_every=100), batch=16,
                            frames=88, examples=10_000),
    # Goes on from "tiny-stream"'s weights (--init, --vision) with five times the voices and the vision encoder
    # trained along: answers about shapes and places teach the encoder what the LM needs to see.
    "tiny-voices": LMRecipe(lm_preset("tiny"), Schedule(steps=1000, lr=3e-4, warmup=50, save_every=100), batch=16,
                            frames=88, examples=10_000, render=RenderSettings(MORE_VOICES), tune_vision=True),
    # Goes on from "tiny-voices"'s weights (--init; --vision: the encoder "tiny-shapes" trained further) with the
    # vision read-out kept as a second task, so the encoder's shape reading survives the LM's training.
    "tiny-readout": LMRecipe(lm_preset("tiny"), Schedule(steps=1000, lr=3e-4, warmup=50, save_every=100), batch=16,
                             frames=88, examples=10_000, render=RenderSettings(MORE_VOICES), tune_vision=True,
                             readout=0.5),
    "smoke": LMRecipe(lm_preset("test").with_(card=32, n_q=8, dep_q=4, delays=(0, 0, 1, 1, 1, 0, 1, 1, 1), text_card=80,
                                              vision_dim=32, vision_tokens=64),
                      Schedule(steps=4, lr=1e-3, warmup=1, save_every=2, log_every=2), batch=2, frames=40, examples=3),
}
# "tiny-readout" with the scene questions it answered worst asked more often: "where" three times, "shape" and
# "colour" twice as often as the others (docs/training.md).
RECIPES["tiny-scenes"] = dataclasses.replace(RECIPES["tiny-readout"], render=RenderSettings(
    MORE_VOICES, intents=(("where", 3.0), ("shape", 2.0), ("colour", 2.0))))
# "tiny-scenes" with the voices warped and the questions re-weighted from its misses on held-out cases: most were
# heard wrong (Scottish and Lancaster voices' "goodbye" answered as a greeting, "where is the star" as thanks), so
# every voice is played up to 12% slower or faster; "where", still answered worst, stays at three, "bye" goes to
# two, the other intents it missed most to one and a half (docs/training.md; the rounds it was trained in and how
# they compared: docs/history.md).
RECIPES["tiny-warp"] = dataclasses.replace(RECIPES["tiny-readout"], render=RenderSettings(
    MORE_VOICES, warp=0.12,
    intents=(("where", 3.0), ("bye", 2.0), ("greet", 1.5), ("see", 1.5), ("shape", 1.5), ("colour", 1.5))))
# "tiny-scenes" with half the questions' "where", "what" and "which" said with a voiceless "hw" onset: the misses
# left on held-out cases were mostly questions heard wrong, most of those in the Scottish voices, whose espeak
# accent says "wh" so and no training accent does (docs/training.md). The onset is spelt in each training voice's
# own phonemes; held-out voices stay out.
RECIPES["tiny-wh"] = dataclasses.replace(RECIPES["tiny-scenes"],
                                         render=dataclasses.replace(RECIPES["tiny-scenes"].render, wh=0.5))
RECIPES["smoke-vision"] = dataclasses.replace(RECIPES["smoke"], render=RenderSettings(MORE_VOICES), tune_vision=True)
RECIPES["smoke-readout"] = dataclasses.replace(RECIPES["smoke-vision"], readout=1.0, readout_scenes=2)


def words(text: str) -> list[str]:
    return text.replace(",", " ").split()


def train_tokenizer(path: Path) -> TextTokenizer:
    """A word-level SentencePiece model over the domain's sentences (ids 0 unk, 1 bos, 2 eos, 3 pad)."""
    import sentencepiece

    path.parent.mkdir(parents=True, exist_ok=True)
    sentences = [" ".join(words(s)) for s in vocabulary()]
    prefix = path.parent / f".{path.stem}-{os.getpid()}"  # processes of one run each write their own, then swap in
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(prefix), model_type="word",
        vocab_size=len({w for s in sentences for w in s.split()}) + 4, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        hard_vocab_limit=False, minloglevel=2)
    os.replace(f"{prefix}.model", path)
    os.remove(f"{prefix}.vocab")
    return TextTokenizer(path)


LEAD_FRAMES = 6  # quiet frames encoded before a speech segment, so its codes start from a settled state
SILENCE_SECONDS = 60  # a pool of encoded quiet, sliced to fill the streams between speech
ANSWER_PAUSE = 4  # frames from the end of the question to the answer: one fixed pause is easiest to learn
# The assistant's stream (its words' codes and the quiet between them) is dithered by this seed, not the run's: a
# word's finer codes change with the dither, so when each run's seed dithered them, each run taught the LM another
# set of codes for the same words: a warm start spent its first steps relearning them and its speech blurred
# (docs/history.md). 2: tiny-stream's seed, whose codes the shipped LM speaks.
ASSISTANT_SEED = 2


class Renderer:
    """Turns (scene, turn, voice) into the model's streams with the frozen codec, and the scene into pixels.

    The user's stream is encoded whole, from the session's start, as the engine encodes it live: dithered
    quiet with the question in it. (Encoding only the question and pasting its codes into slices of encoded
    quiet is cheaper, but the codes around the question then differ from what the engine hands the LM, and
    an LM trained on pasted codes answers far fewer questions given whole streams: docs/history.md.) The
    assistant's stream is its words' codes, each word rendered once after a few frames of quiet and padded
    to whole frames, laid over slices of a pool of encoded quiet: at run time the LM hears its own codes,
    so they need only be consistent. The codec runs on `device` (a GPU encodes far faster than the CPU
    draws the speech)."""

    def __init__(self, codec: MimiCodec, tokenizer: TextTokenizer, cfg: LMConfig, frames: int, image_size: int,
                 seed: int = 0, device: torch.device = torch.device("cpu"),
                 settings: RenderSettings = RenderSettings()) -> None:
        self.codec, self.tokenizer, self.cfg, self.frames = codec.to(device), tokenizer, cfg, frames
        self.image_size, self.seed, self.device = image_size, seed, device
        self.settings, self.intents = settings, dict(settings.intents)
        self.sr, self.frame = codec.cfg.sample_rate, codec.cfg.frame_size
        quiet = np.random.default_rng([ASSISTANT_SEED, 5])
        self.silence = self._encode([torch.zeros(SILENCE_SECONDS * self.sr)], quiet, lead=0)[0]
        self._words: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _streams(self, placed: list[tuple[int, torch.Tensor]], length: int, rng: np.random.Generator) -> torch.Tensor:
        """Codes [n, K, length] of streams of dithered quiet `length` frames long, each with its (first frame,
        clip) in it, encoded whole from the start."""
        batch = torch.zeros(len(placed), 1, length * self.frame)
        for i, (first, clip) in enumerate(placed):
            batch[i, 0, first * self.frame: first * self.frame + len(clip)] = clip
        batch = dither(batch.view(-1), rng).view_as(batch)
        return self.codec.encode(batch.to(self.device)).cpu()[:, :, :length]

    def _encode(self, clips: list[torch.Tensor], rng: np.random.Generator, lead: int = LEAD_FRAMES) -> list[torch.Tensor]:
        """Codes [K, frames] of each clip (padded to whole frames) after `lead` frames of dithered quiet."""
        n = [-(-len(c) // self.frame) for c in clips]
        codes = self._streams([(lead, c) for c in clips], lead + max(n), rng)
        return [codes[i, :, lead: lead + k] for i, k in enumerate(n)]

    def word(self, w: str) -> torch.Tensor:
        """Codes of the assistant saying one word (rendered once, padded with quiet to whole frames)."""
        if w not in self._words:
            rng = np.random.default_rng([ASSISTANT_SEED, 6, zlib.crc32(w.encode())])
            self._words[w] = self._encode([espeak(w, ASSISTANT, self.sr) * 0.7], rng)[0]
        return self._words[w]

    def _quiet(self, length: int, rng: np.random.Generator) -> torch.Tensor:
        start = int(rng.integers(self.silence.shape[1] - length + 1))
        return self.silence[:, start: start + length]

    def layout(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[str, ...], int]:
        """One turn: text stream [T], the question's audio, pixels [3, S, S], the answer's words, the question's
        first frame."""
        scene = Scene.draw(rng)
        turn = draw_turn(scene, rng, self.intents)
        voice = Voice.draw(rng, self.settings.voices)
        asked = turn.question  # drawn only when asked for, so the other recipes render the dialogues they always did
        if self.settings.wh and rng.random() < self.settings.wh:
            asked = voiceless_wh(asked, voice.name)
        question = espeak(asked, voice, self.sr)
        if self.settings.warp:  # drawn only then: unwarped recipes render the dialogues they always rendered
            question = warp(question, rng, self.settings.warp, self.sr)
        question = room(question, rng, self.sr)
        first = int(rng.uniform(0.3, 2.0) / (self.frame / self.sr))
        question = question[: (self.frames - first) * self.frame]
        at = first + -(-len(question) // self.frame) + ANSWER_PAUSE  # the answer's first frame
        text = torch.full((self.frames,), self.cfg.text_padding_id, dtype=torch.long)
        said = []
        for w in words(turn.answer):
            length = self.word(w).shape[1]
            if at + length > self.frames:
                break
            ids = self.tokenizer.encode(w)
            text[at: at + len(ids)] = torch.tensor(ids)
            said.append(w)
            at += length
        pixels = scene_pixels(scene, self.image_size, rng)
        return text, question, pixels, tuple(said), first

    def _stream(self, segments: list[tuple[int, torch.Tensor]], rng: np.random.Generator) -> torch.Tensor:
        """Codes [K, T]: quiet, with each (first frame, codes) segment written over it."""
        out = self._quiet(self.frames, rng).clone()
        for at, codes in segments:
            out[:, at: at + codes.shape[1]] = codes[:, : self.frames - at]
        return out

    @torch.no_grad()
    def examples(self, indices: range) -> dict[str, torch.Tensor]:
        """Turns number `indices` -> "frames" [n, 1 + n_q, T] (int16, by the codec) and "pixels" [n, 3, S, S]
        (uint8, see `pack_pixels`). Each turn draws from its own generator, so any range renders the same
        wherever it is cut."""
        rngs = [np.random.default_rng([self.seed, 3, i]) for i in indices]
        turns = [self.layout(rng) for rng in rngs]
        quiet = np.random.default_rng([self.seed, 4, indices[0]])
        users = self._streams([(t[4], t[1]) for t in turns], self.frames, quiet)
        made = []
        for (text, _, _, said, _), user, rng in zip(turns, users, rngs):
            answer_at = int((text != self.cfg.text_padding_id).nonzero()[0]) if said else self.frames
            segments, at = [], answer_at
            for w in said:
                segments.append((at, self.word(w)))
                at += self.word(w).shape[1]
            made.append(torch.cat([text[None], self._stream(segments, rng), user]))
        return {"frames": torch.stack(made).to(torch.int16), "pixels": pack_pixels(torch.stack([t[2] for t in turns]))}


def pack_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8, as a camera frame holds them. Pixels, not vision tokens, are cached: any vision
    encoder reads them (the LM's tokens are made per batch by the frozen encoder)."""
    return ((pixels + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def unpack_pixels(packed: torch.Tensor) -> torch.Tensor:
    return packed.float() / 127.5 - 1


SHARD = 1000  # dialogues per cache file
LAYOUT = "whole-a2"  # names how the streams are laid out: caches of an earlier layout are not reused
GROUP = 50  # dialogues encoded in one batch


def fingerprint(path: Path) -> str:
    """Names the weights a cache was made with: other weights render anew instead of reusing stale codes."""
    return hashlib.sha1(path.read_bytes()).hexdigest()[:10]


def render_shard(renderer: Renderer, start: int, count: int, path: Path) -> None:
    """Writes turns start..start + count to `path`, whole or not at all (other processes and resumes read it)."""
    made = [renderer.examples(range(i, min(i + GROUP, start + count))) for i in range(start, start + count, GROUP)]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    torch.save({part: torch.cat([m[part] for m in made]) for part in made[0]}, partial)
    os.replace(partial, path)


@dataclass(frozen=True)
class RenderJob:
    """What a worker process needs to build its own renderer (models are loaded there, not pickled)."""
    codec: Path
    tokenizer: Path
    config: LMConfig
    frames: int
    image_size: int
    seed: int
    device: str
    render: RenderSettings = RenderSettings()

    @classmethod
    def of(cls, recipe: LMRecipe, codec: Path, tokenizer: Path, image_size: int, seed: int,
           device: str = "cpu") -> RenderJob:
        """The job for `recipe`'s dialogues, so the training stage and the tests build it the same way."""
        return cls(codec, tokenizer, recipe.config, recipe.frames, image_size, seed, device, recipe.render)

    def renderer(self) -> Renderer:
        return Renderer(load_codec(self.codec).eval(), TextTokenizer(self.tokenizer), self.config, self.frames,
                        self.image_size, self.seed, torch.device(self.device), self.render)


_worker_renderer: Renderer | None = None


def _render_in_worker(job: RenderJob, start: int, count: int, path: Path) -> None:
    global _worker_renderer
    if _worker_renderer is None:
        torch.set_num_threads(1)  # the workers fill the cores, one each
        _worker_renderer = job.renderer()
    render_shard(_worker_renderer, start, count, path)


def shards(recipe: LMRecipe, job: RenderJob, out: Path) -> list[tuple[int, int, Path]]:
    """The run's cache files in `out` as (first dialogue, count, path), named by the layout, seed, codec that
    encoded them, render settings and the pixels' size: a change to any renders anew instead of reusing them."""
    key = f"{fingerprint(job.codec)}-{job.render.key()}"
    counts = [(s, min(SHARD, recipe.examples - s)) for s in range(0, recipe.examples, SHARD)]
    return [(s, n, out / f"lm-{LAYOUT}-{job.seed}-{key}-{job.image_size}px-{s}-{n}.pt") for s, n in counts]


def dialogues(recipe: LMRecipe, job: RenderJob, out: Path, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's dialogues (frames, packed pixels), cached in `out` (`shards`). Under torchrun each process
    renders its share of the missing shards, with `workers` processes of its own (0: in this process), then all
    load them."""
    cached = shards(recipe, job, out)
    rank, size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    mine = [shard for shard in cached if not shard[2].exists()][rank::size]
    title = f"rendering {recipe.examples} dialogues"
    if workers and mine:
        # spawn, not fork: a worker may start CUDA, and this process may hold threads and a CUDA context
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = [pool.submit(_render_in_worker, job, *shard) for shard in mine]
            for future in tqdm(as_completed(done), title, total=len(done), disable=None):
                future.result()
    else:
        renderer = None
        for start, count, path in tqdm(mine, title, disable=None):
            renderer = renderer or job.renderer()
            render_shard(renderer, start, count, path)
    if size > 1:
        dist.barrier()
    loaded = [torch.load(path, weights_only=True) for *_, path in cached]
    return torch.cat([s["frames"] for s in loaded]), torch.cat([s["pixels"] for s in loaded])


class Seeing(nn.Module):
    """The LM with the vision encoder it attends to, as one model: a frozen encoder costs nothing to carry
    (no gradients, no optimizer state, ignored by DDP), and an encoder in training is averaged, checkpointed
    and resumed with the LM, with its per-patch read-out if the recipe keeps one (discarded on export)."""

    def __init__(self, lm: StreamingLM, encoder: nn.Module, readout: PatchReadout | None = None) -> None:
        super().__init__()
        self.lm, self.encoder, self.readout = lm, encoder, readout

    def forward(self, frames: torch.Tensor, pixels: torch.Tensor, *labelled: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Text and audio logits, and the read-out's loss on the labelled scenes (pixels, patch labels) if given.
        One encoder pass serves both, inside this forward, as DDP needs."""
        if not labelled:
            return (*self.lm(frames, self.encoder(pixels)), None)
        tokens = self.encoder(torch.cat([pixels, labelled[0]]))
        return (*self.lm(frames, tokens[: len(pixels)]), self.readout(tokens[len(pixels):], labelled[1]))


LMBatch = tuple[torch.Tensor, ...]  # frames, packed pixels[, labelled scenes' pixels, their patch labels]


def lm_loss(model: nn.Module, batch: LMBatch, step: int, readout: float = 0.0) -> dict[str, torch.Tensor]:
    """Teacher-forced cross-entropy of the text stream (padding down-weighted) and the audio codebooks, given
    frames [B, 1 + n_q, T] and packed pixels [B, 3, S, S] of a `Seeing` model, and the read-out's loss times
    `readout` where the batch brings labelled scenes."""
    lm: StreamingLM = unwrap(model).lm
    device = next(lm.parameters()).device
    frames = batch[0].to(device).long()
    text_logits, audio_logits, cells = model(frames, unpack_pixels(batch[1].to(device)),
                                             *(part.to(device) for part in batch[2:]))
    targets = lm.targets(frames)
    text_target = targets[:, 0]
    weight = torch.where(text_target == lm.cfg.text_padding_id, PAD_WEIGHT, 1.0)
    text_ce = F.cross_entropy(text_logits.transpose(1, 2), text_target, reduction="none")
    audio_ce = F.cross_entropy(audio_logits.permute(0, 3, 1, 2), targets[:, 1:], ignore_index=-100)
    terms = {"text": (text_ce * weight).sum() / weight.sum(), "audio": audio_ce}
    if cells is not None:
        terms["cells"] = readout * cells
    return terms


def stage(recipe_name: str, seed: int, out: Path, codec: Path, vision: Path, init: Path | None = None,
          device: torch.device = torch.device("cpu"), workers: int = 0) -> Stage:
    recipe = RECIPES[recipe_name]
    lm = StreamingLM(recipe.config)
    if init is not None:
        start = load_lm(init)
        if not start.cfg.same_architecture(recipe.config):
            raise ValueError(f"--init {init}: its architecture is not recipe {recipe_name!r}'s")
        lm.load_state_dict(start.state_dict())
    encoder = load_vision(vision).requires_grad_(recipe.tune_vision)
    if recipe.readout and not recipe.tune_vision:
        raise ValueError(f"recipe {recipe_name!r}: a read-out needs the vision encoder trained along (tune_vision)")
    train_tokenizer(out / "tokenizer.model")
    job = RenderJob.of(recipe, codec, out / "tokenizer.model", encoder.cfg.image_size, seed, str(device))
    frames, pixels = dialogues(recipe, job, out, workers)

    def batch(step: int, rank: int) -> LMBatch:
        pick = torch.from_numpy(np.random.default_rng([seed, step, rank, 4]).integers(len(frames), size=recipe.batch))
        if not recipe.readout:
            return frames[pick], pixels[pick]
        rng = np.random.default_rng([seed, step, rank, 5])
        _, shown, labels = labelled_scenes(encoder.cfg, recipe.readout_scenes, rng, inside=True)
        return frames[pick], pixels[pick], shown, labels

    def export(model: nn.Module) -> None:
        save_lm(model.lm, out / "lm.safetensors", dtype=torch.float16)
        if recipe.tune_vision:
            save_vision(model.encoder, out / "vision.safetensors")

    readout = PatchReadout(encoder.cfg.hidden) if recipe.readout else None
    return Stage(model=Seeing(lm, encoder, readout), schedule=recipe.schedule, batch=batch,
                 loss=functools.partial(lm_loss, readout=recipe.readout), export=export)
