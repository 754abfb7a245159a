"""The control plane is typed: mypy must find nothing wrong with it."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_is_clean():
    r = subprocess.run([sys.executable, "-m", "mypy", "vswitch"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
