"""Shared fixtures: factories that synthesize small media files in the test's ``tmp_path``, and the browser
tests' app server and chromium.

The generators themselves live in ``tests/mediagen.py`` (importable by any test module).
"""

from __future__ import annotations

import mediagen
import numpy as np
import pytest
from mediagen import CLICK_TIMES_S


@pytest.fixture
def make_song(tmp_path):
    """Factory: ``make_song("mp3", duration_s=4.0, sr=44100, clicks=CLICK_TIMES_S, ...) -> (path, signal)``.

    The signal is quiet music with loud clicks at ``clicks`` seconds (none if empty), stereo
    float32 ``(2, n)`` at ``sr``. Extra keyword arguments go to `mediagen.music`.
    """

    def make(fmt: str, *, duration_s: float = 4.0, sr: int = 44100, clicks=CLICK_TIMES_S, name=None, **kw):
        y = mediagen.music(duration_s, sr=sr, level=0.05 if clicks else 0.5, **kw)
        if clicks:
            y = mediagen.add_clicks(y, sr=sr, times_s=clicks)
        path = tmp_path / f"{name or 'song'}.{fmt}"
        mediagen.write_song(path, y, sr=sr)
        return path, y

    return make


@pytest.fixture
def make_class_video(tmp_path):
    """Factory: ``make_class_video("mp4", clicks=CLICK_TIMES_S, sr=48000, **write_class_video_kwargs) -> path``.

    Sound: quiet music with clicks at ``clicks`` seconds of the *sound's* own time (so at dance
    time ``clicks + audio_delay_s``); ``audio=False`` for a silent file (no audio stream).
    """
    counter = iter(range(1000))

    def make(
        ext: str = "mp4",
        *,
        clicks=CLICK_TIMES_S,
        sr: int = 48000,
        audio=True,
        duration_s=4.0,
        name=None,
        **kw,
    ):
        y = None
        if audio:
            y = mediagen.music(duration_s + 1.0, sr=sr, level=0.05, seed=1)
            if clicks:
                y = mediagen.add_clicks(y, sr=sr, times_s=clicks)
        path = tmp_path / f"{name or f'class{next(counter)}'}.{ext}"
        return mediagen.write_class_video(path, duration_s=duration_s, audio=y, sr=sr, **kw)

    return make


@pytest.fixture
def click_track():
    """Factory: ``click_track(duration_s, sr=44100, clicks=..., channels=2)``: silence with clicks, float32."""

    def make(duration_s: float, *, sr: int = 44100, clicks=CLICK_TIMES_S, channels: int = 2) -> np.ndarray:
        y = np.zeros((channels, int(round(duration_s * sr))), np.float32)
        return mediagen.add_clicks(y, sr=sr, times_s=clicks)

    return make


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis for the Celery backend's tests: ``$BEATSYNC_TEST_REDIS_URL`` (``.ci/run`` starts one
    on a loopback port), else a ``redis-server`` started here. Without either: CI fails, a
    developer's machine skips with how to install it."""
    import os

    from server_util import RedisServer, redis_available

    url = os.environ.get("BEATSYNC_TEST_REDIS_URL")
    if url:
        yield url
        return
    if not redis_available():
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def short_media(tmp_path_factory):
    """About 12 s of class video with its clean song (`server_util.short_pair`), made once per session."""
    from server_util import short_pair

    return short_pair(tmp_path_factory)


@pytest.fixture(scope="session")
def long_media(tmp_path_factory):
    """About 75 s of class video with its clean song (`server_util.long_pair`): a job of several seconds."""
    from server_util import long_pair

    return long_pair(tmp_path_factory)


# ---------------------------------------------------------------------- the browser tests' server and browser


@pytest.fixture
def server(tmp_path):
    """A fresh app server (``streamlit run app.py``) with one worker thread, its own port and data dir
    (the browser tests': test_e2e_*.py)."""
    from server_util import Server

    s = Server(tmp_path / "data", {"BEATSYNC_WORKERS": 1}, name="e2e", log_dir=tmp_path)
    s.start()
    yield s
    s.close()


@pytest.fixture
def browser():
    """Debian's chromium driven by Playwright (required in CI, skipped elsewhere when missing: see
    test_e2e_browser.chromium_path)."""
    from test_e2e_browser import chromium_path, sync_playwright

    exe = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()
