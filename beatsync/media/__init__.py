"""Everything that touches ffmpeg and containers: probe, decode audio, keyframes, black frames, render.

The ffmpeg binary is the one of the ``imageio-ffmpeg`` wheel (`ffmpeg_exe`); containers are probed
with PyAV (structured data, never ffmpeg's human-readable output). Every user-facing failure is a
`beatsync.errors.MediaError` with a stable ``code``.
"""

from beatsync.media.audio import decode_audio, stream_audio
from beatsync.media.ffmpeg import ffmpeg_exe, ffmpeg_pipe, run_ffmpeg
from beatsync.media.probe import (
    AudioStreamInfo,
    MediaInfo,
    VideoStreamInfo,
    frame_times,
    keyframe_times,
    probe,
    require_audio,
    require_video,
)
from beatsync.media.render import OUTPUT_COPY_CODECS, CutPlan, mux, plan_cut
from beatsync.media.verify import Verified, verify
from beatsync.media.video import black_frames

__all__ = [
    "AudioStreamInfo",
    "CutPlan",
    "MediaInfo",
    "OUTPUT_COPY_CODECS",
    "Verified",
    "VideoStreamInfo",
    "black_frames",
    "decode_audio",
    "ffmpeg_exe",
    "ffmpeg_pipe",
    "frame_times",
    "keyframe_times",
    "mux",
    "plan_cut",
    "probe",
    "require_audio",
    "require_video",
    "run_ffmpeg",
    "stream_audio",
    "verify",
]
