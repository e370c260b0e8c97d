"""`tutti ask`: a spoken turn through the real entry point, with an image or a video as the camera."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import soundfile as sf

ASK_CASE = 2  # "how many shapes do you see", two shapes: one the shipped model answers (as most count questions)


def tutti(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], capture_output=True, text=True)


def test_ask_with_image_and_with_video(tmp_path):
    t = np.arange(16000) / 16000
    question = tmp_path / "q.wav"
    sf.write(str(question), 0.3 * np.sin(2 * np.pi * 200 * t), 16000)
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(10):
        frame = np.zeros((120, 160, 3), np.uint8)
        frame[30:60, i * 10:i * 10 + 30] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    for seen in (["--image", str(image)], ["--video", str(video)]):
        out = tmp_path / "answer.wav"
        done = tutti("ask", "--audio", str(question), *seen, "--output", str(out), "--listen", "1", "--model", "tiny")
        assert done.returncode == 0, done.stderr
        answer, rate = sf.read(str(out))
        # from the question's start to --listen seconds after its end, in whole 80 ms frames (12 + 12)
        assert rate == 16000 and len(answer) == 24 * 1280
        assert f"wrote {out}" in done.stderr


@pytest.mark.parametrize("placement", [[], ["--device", "cpu", "--dtype", "bfloat16"]], ids=["default", "bf16"])
def test_ask_answers_a_held_out_question_about_an_image(tmp_path, placement):
    from tests.support.evaluate import answer_correct, held_out_cases

    case = held_out_cases(ASK_CASE + 1)[ASK_CASE]
    sf.write(str(tmp_path / "q.wav"), case.audio, case.rate)
    cv2.imwrite(str(tmp_path / "scene.png"), case.image)
    done = tutti("ask", "--audio", str(tmp_path / "q.wav"), "--image", str(tmp_path / "scene.png"),
                 "--output", str(tmp_path / "a.wav"), *placement)
    assert done.returncode == 0, done.stderr
    print(f"asked {case.turn.question!r}, answered {done.stdout.strip()!r}")
    assert answer_correct(case.turn.answer, done.stdout)


def test_ask_reports_bad_inputs(tmp_path):
    done = tutti("ask", "--audio", str(tmp_path / "absent.wav"))
    assert done.returncode == 2 and "audio file not found" in done.stderr
    t = np.zeros(1600)
    sf.write(str(tmp_path / "q.wav"), t, 16000)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    done = tutti("ask", "--audio", str(tmp_path / "q.wav"), "--image", str(tmp_path / "bad.png"))
    assert done.returncode == 2 and "cannot read" in done.stderr and "Traceback" not in done.stderr
