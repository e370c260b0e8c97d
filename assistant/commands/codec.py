"""`tutti codec`: round-trip, encode and decode audio files with the streaming codec.

Files are processed as a stream of chunks (identical to the offline result),
so memory stays flat whatever the file's length.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from codec import PRESETS, CheckpointError, CodecConfig, CodecInputError, MimiCodec, load_codec, preset
from codec.audio import load_audio, save_audio
from codec.checkpoint import read_safetensors

from ..progress import progress

log = logging.getLogger("tutti.codec")
CODES_FORMAT = "tutti-codes"
CHUNK_FRAMES = 125  # 10 s of audio per streaming step


def add_codec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path,
                        help="codec weights: Tutti's format, or a public Mimi file (with --preset mimi)")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                        help="architecture of a public-layout checkpoint, or of random weights when no checkpoint "
                             "is given (default: tiny); Tutti's own files carry their architecture")
    parser.add_argument("--codebooks", type=int, help="number of codebooks to encode with (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights when no checkpoint is given")


def open_codec(args: argparse.Namespace) -> MimiCodec:
    try:
        if args.checkpoint is not None:
            return load_codec(args.checkpoint, config=preset(args.preset), num_codebooks=args.codebooks)
        cfg = preset(args.preset)
        if args.codebooks is not None:
            cfg = cfg.with_(num_codebooks=args.codebooks)
    except CheckpointError:
        raise
    except ValueError as e:  # a config the options asked for cannot exist
        raise CodecInputError(str(e)) from None
    log.warning("no codec checkpoint given and no trained codec is bundled yet: using RANDOM weights "
                "(preset %s, seed %d); the output exercises the pipeline but will not sound like the input",
                args.preset, args.seed)
    return random_codec(cfg, args.seed)


def random_codec(cfg: CodecConfig, seed: int) -> MimiCodec:
    """A codec with random weights (until trained ones ship), its codebooks spread so that codes vary."""
    torch.manual_seed(seed)
    model = MimiCodec(cfg)
    for book in model.modules():
        if hasattr(book, "embedding_sum"):
            book.embedding_sum.normal_(0, 0.05)
    return model.eval()


def encode_file(model: MimiCodec, path: Path) -> tuple[torch.Tensor, int]:
    wav = load_audio(path, model.sample_rate, model.cfg.channels)[None]
    n = wav.shape[-1]
    wav = torch.nn.functional.pad(wav, (0, -n % model.frame_size))
    step = CHUNK_FRAMES * model.frame_size
    state = model.init_encode_state(1)
    starts = range(0, wav.shape[-1], step)
    codes = [model.encode_step(wav[..., s:s + step], state) for s in progress(starts, len(starts), "encoding")]
    return torch.cat(codes, dim=-1)[0], n


def decode_codes(model: MimiCodec, codes: torch.Tensor, num_samples: int) -> torch.Tensor:
    state = model.init_decode_state(1)
    starts = range(0, codes.shape[-1], CHUNK_FRAMES)
    audio = [model.decode_step(codes[None, :, s:s + CHUNK_FRAMES], state)
             for s in progress(starts, len(starts), "decoding")]
    return torch.cat(audio, dim=-1)[0, :, :num_samples]


def cmd_roundtrip(args: argparse.Namespace) -> int:
    model = open_codec(args)
    with torch.inference_mode():
        codes, n = encode_file(model, args.input)
        audio = decode_codes(model, codes, n)
    save_audio(args.output, audio, model.sample_rate)
    kbps = codes.shape[0] * torch.tensor(model.cfg.bins).log2().item() * model.cfg.frame_rate / 1000
    print(f"wrote {args.output} ({n / model.sample_rate:.2f} s at {model.sample_rate} Hz; "
          f"{codes.shape[0]} codebooks x {codes.shape[1]} frames, {kbps:.2f} kbps)")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    model = open_codec(args)
    with torch.inference_mode():
        codes, n = encode_file(model, args.input)
    from safetensors.torch import save_file

    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file({"codes": codes.to(torch.int32).contiguous()}, str(args.output), metadata={
        "format": CODES_FORMAT, "num_samples": str(n), "codec": model.cfg.to_json()})
    print(f"wrote {args.output} ({codes.shape[0]} codebooks x {codes.shape[1]} frames)")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    tensors, meta = read_safetensors(args.input)
    if meta.get("format") != CODES_FORMAT or "codes" not in tensors:
        raise CodecInputError(f"{args.input} is not a codes file written by `tutti codec encode`")
    model = open_codec(args)
    made_by = json.loads(meta["codec"])
    ours = json.loads(model.cfg.to_json())
    if {k: v for k, v in made_by.items() if k != "num_codebooks"} != {k: v for k, v in ours.items() if k != "num_codebooks"}:
        raise CodecInputError(f"{args.input} was made by a different codec architecture; "
                              "decode it with the --checkpoint/--preset that encoded it")
    with torch.inference_mode():
        audio = decode_codes(model, tensors["codes"].long(), int(meta["num_samples"]))
    save_audio(args.output, audio, model.sample_rate)
    print(f"wrote {args.output} ({audio.shape[-1] / model.sample_rate:.2f} s at {model.sample_rate} Hz)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("codec", help="encode/decode audio with the streaming neural codec",
                            description="Audio files of any rate and channel count are converted to the codec's.")
    commands = parser.add_subparsers(dest="codec_command", required=True, metavar="COMMAND")
    for name, fn, help_, in_help, out_help in [
        ("roundtrip", cmd_roundtrip, "encode then decode a file (a listening test)", "input audio file", "output WAV"),
        ("encode", cmd_encode, "audio file to a codes file (safetensors)", "input audio file", "output codes file"),
        ("decode", cmd_decode, "codes file back to audio", "codes file from `encode`", "output WAV"),
    ]:
        p = commands.add_parser(name, help=help_, description=help_)
        p.add_argument("input", type=Path, help=in_help)
        p.add_argument("output", type=Path, help=out_help)
        add_codec_options(p)
        p.set_defaults(func=fn, errors=(CodecInputError, CheckpointError))
