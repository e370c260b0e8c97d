"""`tutti serve --certfile --keyfile`: the page and the API over HTTPS, with a self-signed certificate made as
docs/reliability.md says; plain HTTP is not answered; bad certificate options are refused at start-up."""
from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def self_signed(folder) -> tuple[str, str]:
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days",
                    "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_server_speaks_https_with_its_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", "--model", "echo", "--port", str(port),
                               "--certfile", cert, "--keyfile", key], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        for _ in range(100):
            line = server.stdout.readline()
            if "serving" in line or not line:
                break
        assert f"https://127.0.0.1:{port}/" in line
        trusted = ssl.create_default_context(cafile=cert)
        for _ in range(100):  # "serving" is printed just before the socket opens
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=trusted, timeout=5) as r:
                    assert r.status == 200 and b'"ok": true' in r.read()
                    break
            except urllib.error.URLError as e:
                assert isinstance(e.reason, ConnectionRefusedError), e
                time.sleep(0.1)
        else:
            pytest.fail("the server never answered")
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=trusted, timeout=5) as r:
            assert b"<html" in r.read().lower()
        with pytest.raises(OSError):  # plain HTTP to the TLS port gets no page
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_bad_certificate_options_are_refused(tmp_path):
    cert, _ = self_signed(tmp_path)
    for options, words in ((["--certfile", cert], "go together"),
                           (["--certfile", cert, "--keyfile", str(tmp_path / "absent.pem")], "cannot use")):
        done = subprocess.run([sys.executable, "-m", "assistant.cli", "serve", *options], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr
