"""The peak host memory of loading an LM checkpoint, measured in a fresh process (the tests and bench/gpu.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from assistant.model.config import LMConfig

ROOT = Path(__file__).resolve().parents[2]
LOAD = """
import json, sys, torch
from assistant.model.checkpoint import load_lm
from assistant.model.config import LMConfig
def rss(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) * 1024
cfg = LMConfig.from_dict(json.loads(sys.argv[2]))
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) restarts from the current size
before = rss("VmRSS:")
model = load_lm(sys.argv[1], config=cfg, dtype=getattr(torch, sys.argv[3]), device=sys.argv[4])
assert {p.dtype for p in model.parameters()} == {getattr(torch, sys.argv[3])}
print(rss("VmHWM:") - before)
"""


def load_peak(path: Path, cfg: LMConfig, dtype: str, device: str = "cpu") -> int:
    """Bytes the process grew by at most while `load_lm(path, config=cfg, dtype=dtype, device=device)` ran."""
    done = subprocess.run([sys.executable, "-c", LOAD, str(path), cfg.to_json(), dtype, device], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])
