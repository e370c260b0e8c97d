"""`tutti desktop`: talk to the assistant with this computer's microphone, speaker and camera."""
from __future__ import annotations

import argparse
import sys

from core.errors import TuttiError

from ..loader import Placement, build_engine
from . import add_model_options


def device(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def cmd_desktop(args: argparse.Namespace) -> int:
    import sounddevice as sd

    if args.list_devices:
        print(sd.query_devices())
        return 0
    from ..transport.local import talk

    engine = build_engine(args.model, 1, Placement.of(args.device, args.dtype))
    try:
        session, devices = talk(engine, device(args.mic), device(args.speaker), args.camera, args.seconds, args.seed,
                                on_ready=lambda: print(f"tutti: listening ({args.model}); Ctrl-C stops",
                                                       file=sys.stderr, flush=True))
    except sd.PortAudioError as e:
        print(f"tutti: error: audio device: {e} (see --list-devices)", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"tutti: error: {e}", file=sys.stderr)
        return 2
    t = session.timings
    print(f"steps {t.steps} heard {t.steps - t.late_frames} late {t.late_frames} skipped_quiet {t.skipped_input} "
          f"camera_frames {devices.camera_frames} played_samples {devices.played}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("desktop", help="talk through this computer's microphone, speaker and camera",
                       description="Talk to the assistant with local devices (sounddevice, OpenCV).")
    add_model_options(p)
    p.add_argument("--mic", help="input device index or name (default: the system's)")
    p.add_argument("--speaker", help="output device index or name (default: the system's)")
    p.add_argument("--camera", help="camera: a device index (0), a video file or a stream URL; none by default")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_desktop, errors=(TuttiError, ValueError))
