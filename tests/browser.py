"""Headless Chromium for tests: find it, dump a page's DOM after its scripts ran, take screenshots, read PNGs.

Debian's ``chromium`` package is the browser of record. Tests that need it call `require_chromium`: without
Chromium they fail when the environment variable ``CI`` is set (a CI image without the browser is a broken
image) and are skipped elsewhere, both with the command that installs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

#: Where Chromium is looked for, in order: Debian's path first, then names on PATH.
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "headless Chromium is needed to test the HTML report; install it with: apt-get install chromium"
#: Seconds one Chromium launch may take before it is killed (a launch takes about a second).
LAUNCH_TIMEOUT_SECONDS = 60.0
# Quiet, offline, reproducible: no sandbox (tests often run as root in containers), no GPU, no network
# services of the browser itself, a fresh profile per launch, scripts given virtual time to finish.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--virtual-time-budget=5000",
)


def find_chromium() -> str | None:
    """Return the path of a Chromium or Chrome executable, or None when there is none."""
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def require_chromium() -> str:
    """Return Chromium's path; without it fail under CI (``CI`` set) and skip elsewhere."""
    found = find_chromium()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    return found


def render_dom(html_path: Path, *, width: int = 1200, height: int = 900) -> str:
    """Return the DOM of the page at `html_path`, serialised after its scripts ran, in a `width` x `height` window."""
    return _launch([f"--window-size={width},{height}", "--dump-dom", Path(html_path).resolve().as_uri()])


def screenshot(html_path: Path, png_path: Path, width: int, height: int) -> None:
    """Write a PNG of the first `width` x `height` pixels of the page at `html_path` to `png_path`."""
    png_path = Path(png_path).resolve()
    _launch([f"--window-size={width},{height}", f"--screenshot={png_path}", Path(html_path).resolve().as_uri()])
    if not png_path.is_file():
        raise AssertionError(f"chromium wrote no screenshot to {png_path}")


def read_png(path: Path) -> np.ndarray:
    """Return the pixels of an 8-bit, non-interlaced RGB or RGBA PNG as a (height, width, channels) uint8 array."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    position, compressed = 8, []
    width = height = depth = colour = interlace = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunk = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            compressed.append(chunk)
        elif kind == b"IEND":
            break
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{path}: depth {depth}, colour type {colour}, interlace {interlace}; only 8-bit RGB(A)")
    channels = 3 if colour == 2 else 4
    rows = np.frombuffer(zlib.decompress(b"".join(compressed)), dtype=np.uint8).reshape(height, width * channels + 1)
    return _unfilter(rows[:, 0], rows[:, 1:].reshape(height, width, channels))


def _unfilter(kinds: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """Undo the PNG row filters (RFC 2083, section 6) of `filtered`, shaped (height, width, channels).

    A pixel depends on its left, upper and upper-left neighbours, all on earlier anti-diagonals, so each
    anti-diagonal is decoded at once: width + height numpy steps instead of a Python step per byte.
    """
    height, width, channels = filtered.shape
    if np.any(kinds > 4):
        raise ValueError(f"unknown PNG filter type {int(kinds.max())}")
    # Decoded pixels, flat, behind one row of zeros above and one column of zeros to the left (the edges).
    span = width + 1
    pixels = np.zeros(((height + 1) * span, channels), dtype=np.int16)
    values = filtered.reshape(height * width, channels).astype(np.int16)
    kind_of_pixel = np.repeat(kinds.astype(np.int16), width)
    for diagonal in range(height + width - 1):
        row = np.arange(max(0, diagonal - width + 1), min(height, diagonal + 1))
        source = row * width + diagonal - row
        target = (row + 1) * span + diagonal - row + 1
        left, up, corner = pixels[target - 1], pixels[target - span], pixels[target - span - 1]
        estimate = left + up - corner
        far_left, far_up, far_corner = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - corner)
        paeth = np.where(
            (far_left <= far_up) & (far_left <= far_corner), left, np.where(far_up <= far_corner, up, corner)
        )
        kind = kind_of_pixel[source][:, None]
        predicted = np.where(
            kind == 4,
            paeth,
            np.where(kind == 3, (left + up) >> 1, np.where(kind == 2, up, np.where(kind == 1, left, 0))),
        )
        pixels[target] = (values[source] + predicted) & 0xFF
    return pixels.reshape(height + 1, span, channels)[1:, 1:].astype(np.uint8)


def _launch(arguments: list[str]) -> str:
    """Run Chromium with the test flags and `arguments` in a fresh profile; return its standard output."""
    executable = require_chromium()
    with tempfile.TemporaryDirectory(prefix="neuraltrade-chromium-", ignore_cleanup_errors=True) as profile:
        command = [executable, *_FLAGS, f"--user-data-dir={profile}", *arguments]
        # Its own process group, so a hung browser is ended with every helper process it started.
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            output, errors = process.communicate(timeout=LAUNCH_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            _end_group(process.pid)
            process.communicate()
            raise AssertionError(
                f"chromium did not finish within {LAUNCH_TIMEOUT_SECONDS:.0f} s: {arguments}"
            ) from None
        _end_group(process.pid)
    if process.returncode != 0:
        tail = "\n".join(errors.strip().splitlines()[-15:])
        raise AssertionError(f"chromium exited with status {process.returncode} for {arguments}:\n{tail}")
    return output


def _end_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
