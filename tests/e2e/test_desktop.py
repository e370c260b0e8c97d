"""`tutti desktop` and `tutti client` on real audio devices: PulseAudio null sinks as microphone and speaker,
a video file as camera. The tests play a question into the microphone and record what comes out of the speaker."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.skipif(shutil.which("pulseaudio") is None or shutil.which("paplay") is None,
                                reason="PulseAudio is not installed (make test installs it)")


def stop_pulse() -> None:
    subprocess.run(["pulseaudio", "-k"], capture_output=True)
    for _ in range(50):  # -k returns before the daemon is gone
        if subprocess.run(["pulseaudio", "--check"], capture_output=True).returncode:
            return
        time.sleep(0.1)


@pytest.fixture
def pulse():
    stop_pulse()
    subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1"], capture_output=True, check=True)
    time.sleep(0.5)
    for sink in ("tutti_mic", "tutti_speaker"):
        subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={sink}"], capture_output=True, check=True)
    yield
    stop_pulse()


def test_desktop_session_on_null_sinks_and_a_video_camera(pulse, tmp_path):
    from tests.support.evaluate import held_out_cases

    case = held_out_cases(8)[7]  # a spoken question (held-out voice) about a scene with one shape
    question = tmp_path / "question.wav"
    sf.write(str(question), case.audio, case.rate)
    video = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, case.image.shape[1::-1])
    for _ in range(20):
        writer.write(case.image)
    writer.release()
    heard = tmp_path / "speaker.wav"
    recorder = subprocess.Popen(["parecord", "--device=tutti_speaker.monitor", "--file-format=wav", str(heard)])
    env = dict(os.environ, PULSE_SOURCE="tutti_mic.monitor", PULSE_SINK="tutti_speaker")
    app = subprocess.Popen([sys.executable, "-m", "assistant.cli", "desktop", "--model", "tiny", "--seconds", "7",
                            "--camera", str(video)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the question is spoken once the app listens (model built, devices open): a fixed wait was too short
    # for a fresh checkout's first imports, and the app then heard only the end of the question
    said = []
    while not said or ("listening" not in said[-1] and said[-1]):
        said.append(app.stderr.readline())
    subprocess.run(["paplay", "--device=tutti_mic", str(question)], check=True)
    out, err = app.communicate(timeout=60)
    err = "".join(said) + err
    recorder.terminate()
    recorder.wait(timeout=5)
    assert app.returncode == 0, err
    stats = dict(zip(out.split()[::2], map(int, out.split()[1::2])))
    assert stats["heard"] >= 15, f"the app's microphone got too little of the 2 s question: {out}"
    assert stats["camera_frames"] >= 5 and stats["played_samples"] > 24_000
    speaker, _ = sf.read(str(heard))
    assert np.abs(speaker).max() > 0.05, "the assistant's answer did not come out of the app's speaker"


def test_desktop_reports_a_bad_camera(pulse, tmp_path):
    done = subprocess.run([sys.executable, "-m", "assistant.cli", "desktop", "--model", "echo", "--seconds", "1",
                           "--camera", str(tmp_path / "absent.avi")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot open camera" in done.stderr


def test_client_talks_to_a_live_server_from_local_devices(pulse, tmp_path):
    t = np.arange(48_000 * 2) / 48_000
    question = tmp_path / "question.wav"
    sf.write(str(question), 0.5 * np.sin(2 * np.pi * 300 * t), 48_000)
    video = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for _ in range(10):
        writer.write(np.full((480, 640, 3), 90, np.uint8))
    writer.release()
    server = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", "--model", "tiny", "--port", "8787"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if "serving" in (server.stdout.readline() or ""):
                break
        env = dict(os.environ, PULSE_SOURCE="tutti_mic.monitor", PULSE_SINK="tutti_speaker")
        app = subprocess.Popen([sys.executable, "-m", "assistant.cli", "client", "ws://127.0.0.1:8787/ws",
                                "--seconds", "5", "--camera", str(video)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        subprocess.run(["paplay", "--device=tutti_mic", str(question)], check=True)
        out, err = app.communicate(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert app.returncode == 0, err
    words = out.split()
    stats = dict(zip(words[-6::2], map(int, words[-5::2])))
    assert stats["sent_samples"] > 48_000 * 3 and stats["received_samples"] > 24_000 * 3
    assert stats["camera_frames"] >= 3


def test_client_reports_an_unreachable_server():
    done = subprocess.run([sys.executable, "-m", "assistant.cli", "client", "ws://127.0.0.1:9/ws", "--seconds", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot talk to" in done.stderr
