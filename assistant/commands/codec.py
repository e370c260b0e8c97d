"""`tutti codec`: round-trip, encode and decode audio files with the streaming codec (`codec.files`)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from codec import PRESETS, CheckpointError, CodecInputError, MimiCodec, load_codec, preset
from codec.files import decode_codes, encode_file, load_codes, roundtrip_file, save_codes
from core.audio import save_audio

from ..weights import BUNDLED


def add_codec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=BUNDLED / "codec.safetensors",
                        help="codec weights: Tutti's format, or a public Mimi file (default: the bundled "
                             "tutti-tiny codec)")
    parser.add_argument("--preset", default="mimi", choices=sorted(PRESETS),
                        help="architecture of a public-layout checkpoint (default: mimi); Tutti's own files carry "
                             "their architecture")
    parser.add_argument("--codebooks", type=int, help="number of codebooks to encode with (default: the model's)")


def open_codec(args: argparse.Namespace) -> MimiCodec:
    try:
        return load_codec(args.checkpoint, config=preset(args.preset), num_codebooks=args.codebooks)
    except CheckpointError:
        raise
    except ValueError as e:  # a config the options asked for cannot exist
        raise CodecInputError(str(e)) from None


def cmd_roundtrip(args: argparse.Namespace) -> int:
    model = open_codec(args)
    codes, n = roundtrip_file(model, args.input, args.output)
    kbps = codes.shape[0] * math.log2(model.cfg.bins) * model.cfg.frame_rate / 1000
    print(f"wrote {args.output} ({n / model.sample_rate:.2f} s at {model.sample_rate} Hz; "
          f"{codes.shape[0]} codebooks x {codes.shape[1]} frames, {kbps:.2f} kbps)")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    model = open_codec(args)
    codes, n = encode_file(model, args.input)
    save_codes(args.output, codes, n, model)
    print(f"wrote {args.output} ({codes.shape[0]} codebooks x {codes.shape[1]} frames)")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    model = open_codec(args)
    codes, n = load_codes(args.input, model)
    audio = decode_codes(model, codes, n)
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
