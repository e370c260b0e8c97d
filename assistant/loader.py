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

from .engine import CudaGraphs, Engine
from .model.checkpoint import load_lm
from .model.lm import StreamingLM
from .model.tokenizer import TextTokenizer
from .preset import PRESETS, ModelPreset
from .weights import model_files

log = logging.getLogger("tutti.loader")
ECHO = "echo"
MODEL_HELP = ("echo: the bundled codec's round trip with no LM, a sound check; tiny: the bundled tutti-tiny "
              "(default); or a directory of checkpoints (see README)")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": None}
DEVICE_HELP = "cpu, cuda or cuda:N (default: cuda where a GPU is present, else cpu)"
DTYPE_HELP = ("precision of the LM and the vision encoder: float32, bfloat16, or int8 (the LM's weights as int8, "
              "activations at the device's default); default bfloat16 on a GPU, float32 on the CPU. The codec "
              "always runs in float32 (it is small, and its codebook search is precise)")


@dataclass(frozen=True)
class Placement:
    """Where a model runs and at what precision."""
    device: torch.device
    dtype: torch.dtype  # of the LM's and the vision encoder's weights and activations
    int8: bool = False  # the LM's linear layers' weights as int8

    @classmethod
    def of(cls, device: str | None = None, dtype: str | None = None) -> Placement:
        """From `--device` and `--dtype` (None: the defaults, see DEVICE_HELP and DTYPE_HELP)."""
        try:
            target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}: {DEVICE_HELP}") from None
        if target.type not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {device!r}: {DEVICE_HELP}")
        if target.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device} asked for, but torch sees no CUDA GPU here")
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        default = torch.bfloat16 if target.type == "cuda" else torch.float32
        precision = DTYPES[dtype] if dtype is not None and DTYPES[dtype] is not None else default
        return cls(target, precision, dtype == "int8")

    def __str__(self) -> str:
        return f"{self.device}, {'int8 weights, ' if self.int8 else ''}{str(self.dtype).removeprefix('torch.')}"


@dataclass(frozen=True)
class Model:
    preset: ModelPreset  # the loaded stages' configs, checked to fit
    codec: MimiCodec
    lm: StreamingLM | None = None
    vision: SiglipVision | None = None
    tokenizer: TextTokenizer | None = None


CPU = Placement(torch.device("cpu"), torch.float32)


def load_model(name: str, placement: Placement = CPU) -> Model:
    """`echo`, a preset with bundled weights (`tiny`) or a model directory, loaded straight onto the placement's
    device: the LM and the vision encoder at its dtype, the codec in float32."""
    device, dtype = placement.device, placement.dtype
    files = model_files(_folder(name))
    codec = load_codec(files.codec, device=device)
    if name == ECHO:
        return Model(ModelPreset(codec.cfg), codec)
    if files.lm is None or files.tokenizer is None:
        raise ValueError(f"{name}: a conversational model needs lm.safetensors and tokenizer.model beside its codec")
    lm = load_lm(files.lm, device=device, dtype=dtype, int8=placement.int8)
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


def build_engine(name: str, max_sessions: int, placement: Placement = CPU) -> Engine:
    """An engine on `load_model(name, placement)`; sampling follows the LM's config. On a GPU each batch size's
    step is captured as a CUDA graph at start-up."""
    m = load_model(name, placement)
    capture = CudaGraphs() if placement.device.type == "cuda" else None
    return Engine(m.codec, m.lm, vision=m.vision, tokenizer=m.tokenizer, max_sessions=max_sessions,
                  vision_pool=m.preset.vision_pool, capture=capture)
