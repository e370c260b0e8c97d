"""Audio files to codes files and back, streamed in chunks: identical to the offline result, and memory stays
flat whatever the file's length. A codes file is safetensors holding the codes, the sample count and the
config of the codec that made them."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from core.audio import load_audio, save_audio
from core.checkpoint import read_safetensors
from core.errors import CodecInputError

from .model import MimiCodec

CODES_FORMAT = "tutti-codes"
CHUNK_FRAMES = 125  # 10 s of audio per streaming step


@torch.inference_mode()
def encode_file(model: MimiCodec, path: Path) -> tuple[torch.Tensor, int]:
    """Any audio file -> codes [codebooks, frames] and the number of samples at the codec's rate."""
    wav = load_audio(path, model.sample_rate, model.cfg.channels)[None]
    n = wav.shape[-1]
    wav = torch.nn.functional.pad(wav, (0, -n % model.frame_size))
    step = CHUNK_FRAMES * model.frame_size
    state = model.init_encode_state(1)
    starts = range(0, wav.shape[-1], step)
    codes = [model.encode_step(wav[..., s:s + step], state) for s in tqdm(starts, "encoding", disable=None)]
    return torch.cat(codes, dim=-1)[0], n


@torch.inference_mode()
def decode_codes(model: MimiCodec, codes: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Codes [codebooks, frames] -> audio [channels, num_samples]."""
    state = model.init_decode_state(1)
    starts = range(0, codes.shape[-1], CHUNK_FRAMES)
    audio = [model.decode_step(codes[None, :, s:s + CHUNK_FRAMES], state)
             for s in tqdm(starts, "decoding", disable=None)]
    return torch.cat(audio, dim=-1)[0, :, :num_samples]


def save_codes(path: Path, codes: torch.Tensor, num_samples: int, model: MimiCodec) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"codes": codes.to(torch.int32).contiguous()}, str(path), metadata={
        "format": CODES_FORMAT, "num_samples": str(num_samples), "codec": model.cfg.to_json()})


def load_codes(path: Path, model: MimiCodec) -> tuple[torch.Tensor, int]:
    """The codes and sample count of a codes file, refused unless `model` has the architecture that made it."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != CODES_FORMAT or "codes" not in tensors:
        raise CodecInputError(f"{path} is not a codes file written by `tutti codec encode`")
    made_by = json.loads(meta["codec"])
    ours = json.loads(model.cfg.to_json())
    if {k: v for k, v in made_by.items() if k != "num_codebooks"} != {k: v for k, v in ours.items() if k != "num_codebooks"}:
        raise CodecInputError(f"{path} was made by a different codec architecture; "
                              "decode it with the --checkpoint/--preset that encoded it")
    return tensors["codes"].long(), int(meta["num_samples"])


def roundtrip_file(model: MimiCodec, path: Path, out: Path) -> tuple[torch.Tensor, int]:
    """Encode `path` and decode it into `out`; returns the codes and the sample count."""
    codes, n = encode_file(model, path)
    save_audio(out, decode_codes(model, codes, n), model.sample_rate)
    return codes, n
