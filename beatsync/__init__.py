"""BeatSync: put the clean song under a dance-class video, in sync to a few milliseconds.

Layers (calls go down; a lower one never imports a higher one)::

    beatsync.api        the JSON API (the pages in ui/ and views/ sit beside it, over the service)
    beatsync.service    uploads, submissions, status, downloads: what the pages and the API ask
    beatsync.tasks      the task store and the workers (knows nothing of audio); beatsync.job runs one task
    beatsync.pipeline   one job: probe -> decode -> align -> trim -> render both variants
    beatsync.align      alignment engines (`modular`, `v2`) on numpy arrays
    beatsync.analysis   features and beats on numpy arrays
    beatsync.media      everything that touches ffmpeg / containers

Shared by all of them: `beatsync.contract` (names, options, the typed records each layer hands
on), `beatsync.messages` (every user-facing text) and `beatsync.errors`.
"""

__version__ = "0.1.0"
