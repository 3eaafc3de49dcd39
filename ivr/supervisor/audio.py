"""Prompts as speech: espeak-ng renders a prompt's text to WAV, cached on disk.

Clips are cached in the instance folder (`supervisor-audio/`, mode 700) under a
digest of voice, speed and text, so a menu prompt heard in a thousand calls is
rendered once. Spoken prompts can hold account data (a balance), so the cache
is kept as private as the database, and trimmed to `MAX_CLIPS` files, oldest
first. Without espeak-ng, `available` is False and the console says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

log = logging.getLogger("ivr.supervisor.audio")

SPEED = 170  # words per minute, near a telephone prompt's pace
MAX_CLIPS = 5000
RENDER_TIMEOUT = 30.0


class Speech:
    """Text to speech with espeak-ng, cached on disk."""

    def __init__(self, cache: Path, executable: str | None = None) -> None:
        self.cache = cache
        self.executable = executable if executable is not None else shutil.which("espeak-ng")

    @property
    def available(self) -> bool:
        """Whether prompts can be spoken (espeak-ng is installed)."""
        return bool(self.executable)

    def clip(self, text: str, voice: str) -> Path | None:
        """The WAV of `text` in `voice` (rendered now unless cached); None if it cannot be."""
        if not self.executable or not text.strip():
            return None
        digest = hashlib.sha256(f"{voice}\n{SPEED}\n{text}".encode()).hexdigest()
        path = self.cache / f"{digest}.wav"
        if path.exists():
            return path
        self.cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.cache, suffix=".part")
        os.close(fd)
        try:
            done = subprocess.run(
                [self.executable, "-v", voice, "-s", str(SPEED), "-w", temp, "--stdin"],
                input=text.encode(),
                capture_output=True,
                timeout=RENDER_TIMEOUT,
                check=False,
            )
            if done.returncode != 0 or os.path.getsize(temp) <= 44:
                log.error("espeak-ng failed for a %s prompt (exit %d)", voice, done.returncode)
                return None
            os.replace(temp, path)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("espeak-ng could not run: %s", type(exc).__name__)
            return None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        self._trim()
        return path

    def _trim(self) -> None:
        clips = list(self.cache.glob("*.wav"))
        if len(clips) <= MAX_CLIPS:
            return
        clips.sort(key=lambda p: p.stat().st_mtime)
        for old in clips[: len(clips) - MAX_CLIPS]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def seconds(path: Path) -> float:
    """A WAV file's length in seconds."""
    with wave.open(str(path), "rb") as clip:
        return clip.getnframes() / float(clip.getframerate())
