"""Benchmark cases run each in a fresh process, so that each one's peak RSS and caches are its own."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_case(script: str, case: str, options: list[str]) -> dict[str, Any]:
    """Run `script` with ``--case case --workdir <a fresh temporary folder>`` and `options`, from the
    project's root; return the JSON object its last line of output prints."""
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, script, "--case", case, "--workdir", workdir, *options]
        output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result
