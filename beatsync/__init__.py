"""BeatSync: put the clean song under a dance-class video, in sync to a few milliseconds.

Layers (a lower one never imports a higher one)::

    beatsync.pipeline   one job: probe -> decode -> align -> trim -> render both variants
    beatsync.align      alignment engines (`modular`, `v2`) on numpy arrays
    beatsync.analysis   features and beats on numpy arrays
    beatsync.media      everything that touches ffmpeg / containers
"""

__version__ = "0.1.0"
