"""Loading a model by name or directory into an engine: the library face of `tutti serve/ask/desktop`.

`echo` is the bundled codec alone (its round trip, a sound check of the media path); a preset name (`tiny`)
or a directory of checkpoints gives codec, LM, tokenizer and, where present, the vision encoder. Whatever
is loaded is checked to fit together (`ModelPreset`) before an engine is built on it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from codec import MimiCodec, load_codec
from core.errors import CheckpointError
from encoders import SiglipVision, load_vision

from .engine import Engine
from .model.checkpoint import load_lm
from .model.lm import StreamingLM
from .model.tokenizer import TextTokenizer
from .preset import PRESETS, ModelPreset
from .weights import model_files

log = logging.getLogger("tutti.loader")
ECHO = "echo"
MODEL_HELP = ("echo: the bundled codec's round trip with no LM, a sound check; tiny: the bundled tutti-tiny "
              "(default); or a directory of checkpoints (see README)")


@dataclass(frozen=True)
class Model:
    preset: ModelPreset  # the loaded stages' configs, checked to fit
    codec: MimiCodec
    lm: StreamingLM | None = None
    vision: SiglipVision | None = None
    tokenizer: TextTokenizer | None = None


def load_model(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               int8: bool = False) -> Model:
    """`echo`, a preset with bundled weights (`tiny`) or a model directory, loaded onto `device` at `dtype`
    (`int8`: the LM's linear layers weight-only int8)."""
    files = model_files(_folder(name))
    codec = load_codec(files.codec, device=device, dtype=dtype)
    if name == ECHO:
        return Model(ModelPreset(codec.cfg), codec)
    if files.lm is None or files.tokenizer is None:
        raise ValueError(f"{name}: a conversational model needs lm.safetensors and tokenizer.model beside its codec")
    lm = load_lm(files.lm, device=device, dtype=dtype, int8=int8)
    vision = load_vision(files.vision, device=device, dtype=dtype) if files.vision is not None else None
    preset = ModelPreset(codec.cfg, lm.cfg, None if vision is None else vision.cfg)
    tokenizer = TextTokenizer(files.tokenizer, lm.cfg.text_padding_id, lm.cfg.text_end_padding_id)
    log.info("model %s: codec %s, LM %s, vision %s", name, files.codec.name, files.lm.name,
             files.vision.name if files.vision else "none")
    return Model(preset, codec, lm, vision, tokenizer)


def _folder(name: str) -> Path:
    """Where a name's files lie: a preset's bundled weights (echo: tiny's codec), or the directory named."""
    preset = PRESETS.get("tiny" if name == ECHO else name)
    if preset is not None and preset.weights is not None:
        return preset.weights
    if not Path(name).is_dir():
        raise CheckpointError(f"no model {name!r}: name one of {', '.join([ECHO, *PRESETS])} or a directory of "
                              "checkpoints")
    return Path(name)


def build_engine(name: str, max_sessions: int, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> Engine:
    """An engine on `load_model(name, device, dtype)`; sampling follows the LM's config."""
    m = load_model(name, device, dtype)
    return Engine(m.codec, m.lm, vision=m.vision, tokenizer=m.tokenizer, max_sessions=max_sessions,
                  vision_pool=m.preset.vision_pool)
