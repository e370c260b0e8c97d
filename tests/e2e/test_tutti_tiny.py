"""The bundled model end to end: headless Chromium whose fake microphone asks a question (a held-out voice) and
whose fake camera shows a scene, connected to `tutti serve` over loopback WebRTC. The captions must be one of
the domain's answers, spoken after the question, and the answer's speech must arrive; whether the answer is
the right one is printed (the model misses some held-out questions, so a right answer cannot be required
here; tests/model checks accuracy), with the time from the end of the question to the answer."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import pytest_asyncio

from assistant.loader import Placement, build_engine
from assistant.synth.dialogue import answers
from tests.support.evaluate import answer_correct, held_out_cases, normalise
from tests.support.loopback import CHROMIUM, serving, started_page

pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"),
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")]
LEAD = 1.5  # seconds of quiet before the question: the page connects meanwhile
CASE = 7  # "how many things can you see", one shape (held-out voice)
MIC_THRESHOLD = 0.02


def write_question(path: Path, audio: np.ndarray, rate: int) -> tuple[float, float]:
    """The question after LEAD s of quiet, 4 s of quiet after it; returns when its sound starts and ends (s)."""
    import torch

    from core.audio import resample, save_audio

    speech = resample(torch.from_numpy(audio).float(), rate, 48_000).numpy()
    full = np.concatenate([np.zeros(int(LEAD * 48_000)), speech, np.zeros(4 * 48_000)])
    save_audio(path, torch.from_numpy(full)[None], 48_000)
    return float(np.flatnonzero(np.abs(full) > MIC_THRESHOLD)[0]) / 48_000, LEAD + len(speech) / 48_000


def write_scene(path: Path, image: np.ndarray, frames: int = 30) -> Path:
    """The scene as raw 4:2:0 video (what Chromium's fake camera reads)."""
    h, w = image.shape[:2]
    yuv = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + yuv)
    return path


@pytest_asyncio.fixture(params=["float32", "bfloat16"])
async def server(request):
    async with serving(build_engine("tiny", 4, Placement.of("cpu", request.param))) as (url, _):
        yield url


@pytest.mark.asyncio
async def test_browser_question_gets_the_right_spoken_answer(server, tmp_path):
    case = held_out_cases(CASE + 1)[CASE]
    question_start, question_end = write_question(tmp_path / "mic.wav", case.audio, case.rate)
    y4m = write_scene(tmp_path / "cam.y4m", case.image)
    async with started_page(server, tmp_path / "mic.wav", y4m) as page:
        await page.evaluate(f"window.tutti.measureOnsets({MIC_THRESHOLD}, 0.05)")
        await asyncio.sleep(question_end + 4)
        captions = await page.evaluate("window.tutti.captions")
        onsets = await page.evaluate("window.tutti.onsets")
    right = answer_correct(case.turn.answer, captions)
    print(f"asked {case.turn.question!r}; captions {captions!r}; expected {case.turn.answer!r} "
          f"({'right' if right else 'wrong'})")
    assert normalise(captions) in {normalise(a) for a in answers()}
    assert onsets["mic"] is not None and onsets["remote"] is not None, onsets
    ended = onsets["mic"] + question_end - question_start  # on the page's clock
    print(f"first answer audio {onsets['remote'] - ended:.2f} s after the question ended (page clock)")
