"""Generate a corpus of class *structures* on songs the dev set does not use (shared generator).

The dev corpus (../shared/corpus, d01-d22) has one or two examples of each structure, on six songs.
This set plays the same kinds of structure on 16 other songs, under harder conditions, so that a
change can be checked on recordings it was not tuned on:

* a slow run-through and then full speed (pitch moved, pitch kept; 0.75-0.92x), with and without
  a pause between;
* dance edits: a section cut (the music jumps ahead) or repeated (it jumps back), one or two per
  take, with noise or reverb;
* long continuous takes of songs whose sections repeat (up to 5 minutes, with clock drift);
* a continuous take with pink noise and echo (quiet passages must not split it);
* heavy reverb (RT60 1.5 s) on a song with repeated sections;
* everything at once (noise, reverb, speaker clipping, AGC, counting, 48 kbps);
* 15-16 s of music at -9 dB SNR inside a minute or more of talk;
* another song before or after the given one, three run-throughs in a 6-minute class,
  0.80x pitch kept, 1.04x and 1.06x, a 14-s clip, quiet music in 2 minutes of talk;
* negatives: an unrelated song, two other songs, talk with applause and footsteps, talk only.

    /tmp/venv-corpus/bin/python benchmarks/structures_corpus.py --out /tmp/corpus-struct [--jobs 2]
    python ../shared/corpus/score.py --corpus /tmp/corpus-struct --cmd 'python -m beatsync align {dance} {bgm}'

Needs what ../shared/corpus/setup.sh installs (run that first). Not a target to tune to: the
acceptance set uses yet other recordings.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "corpus"))

import make_corpus as mc  # noqa: E402

M = "hedgewars/Data/Music/"
TRACKS = {name: f"{M}{name}.ogg" for name in (
    "Castle", "City", "Compost", "Desert", "EarthRise", "Freeway", "Fruit", "Golf", "Halloween", "Jungle",
    "Nature", "Olympics", "Rock", "Sheep", "bath", "hell", "oriental", "pirate", "snow", "underwater")}

NOISY = dict(noise=dict(snr=8.0, crowd=3))
ECHO = dict(room=dict(rt60=0.8, drr=0.0))
COUNT = dict(teacher=dict(talk=True, count=True, level=1.0))

STRUCTURES = {
    "seed": 42424,
    "tracks": TRACKS,
    "cases": [
        # --- slow run-through, then full speed
        dict(id="x01", track="Castle", dur=130, segs=[dict(at=3.1, bgm=0.0, len=50.0, rate=0.88),
                                                      dict(at=68.4, bgm=0.0)], **COUNT, **NOISY),
        dict(id="x02", track="City", dur=130, segs=[dict(at=2.4, bgm=5.0, len=55.0, rate=0.85, mode="stretch"),
                                                    dict(at=70.2, bgm=5.0)], **COUNT, room=dict(rt60=0.6, drr=1.0)),
        dict(id="x03", track="Compost", dur=110, segs=[dict(at=1.2, bgm=0.0, len=45.0, rate=0.9),
                                                       dict(at=46.2, bgm=0.0)], **NOISY),
        dict(id="x04", track="Golf", dur=120, segs=[dict(at=4.0, bgm=20.0, len=48.0, rate=0.76, mode="stretch"),
                                                    dict(at=66.0, bgm=20.0)], **COUNT),
        dict(id="x05", track="Jungle", dur=120, segs=[dict(at=2.0, bgm=0.0, len=40.0, rate=0.92, mode="stretch"),
                                                      dict(at=55.5, bgm=0.0)], noise=dict(snr=10.0, crowd=2)),
        # --- dance edits: cut (jump ahead) and repeat (jump back)
        dict(id="x06", track="Desert", dur=100, segs=[dict(at=3.3, bgm=10.0, len=37.7), dict(at=41.0, bgm=82.5)],
             **ECHO),
        dict(id="x07", track="EarthRise", dur=90, segs=[dict(at=2.2, bgm=20.0, len=31.3), dict(at=33.5, bgm=36.0)],
             **COUNT, **NOISY),
        dict(id="x08", track="Freeway", dur=110, segs=[dict(at=1.0, bgm=0.0, len=33.0), dict(at=34.0, bgm=61.7,
                                                                                          len=27.0),
                                                       dict(at=61.0, bgm=70.2)], **NOISY),
        dict(id="x09", track="Fruit", dur=100, segs=[dict(at=0.0, bgm=42.0, len=44.4), dict(at=44.4, bgm=50.9)],
             room=dict(rt60=1.0, drr=-1.0), teacher=dict(talk=True, count=True, level=3.0)),
        dict(id="x10", track="Halloween", dur=120, segs=[dict(at=5.5, bgm=0.0, len=40.0), dict(at=45.5, bgm=24.0,
                                                                                             len=30.0),
                                                         dict(at=75.5, bgm=90.0)], **COUNT),
        dict(id="x11", track="Sheep", dur=100, segs=[dict(at=2.0, bgm=30.0, len=36.0, rate=0.9),
                                                     dict(at=38.0, bgm=80.0, rate=0.9)], **NOISY),
        # --- long continuous takes
        dict(id="x12", track="Castle", dur=300, segs=[dict(at=6.0, bgm=0.0, rate=0.99993)],
             noise=dict(snr=10.0, crowd=3), audio=dict(kbps=64)),
        dict(id="x13", track="pirate", dur=200, segs=[dict(at=2.0, bgm=30.0)],
             noise=dict(snr=6.0, crowd=0), room=dict(rt60=0.9, drr=-1.0)),
        dict(id="x14", track="Olympics", dur=150, segs=[dict(at=3.0, bgm=40.0)],
             room=dict(rt60=1.5, drr=-4.0), noise=dict(snr=12.0, crowd=2)),
        dict(id="x15", track="Rock", dur=180, segs=[dict(at=8.0, bgm=0.0, rate=1.00015)],
             **COUNT, noise=dict(snr=5.0, crowd=3), room=dict(rt60=0.7, drr=0.0)),
        # --- extreme conditions with the song really there
        dict(id="x16", track="oriental", dur=70, segs=[dict(at=4.0, bgm=10.0)],
             noise=dict(snr=3.0, crowd=3), room=dict(rt60=0.9, drr=-2.0), speaker=dict(band=True, drive=2.0),
             agc=True, teacher=dict(talk=True, count=True, level=3.0), audio=dict(kbps=48, sr=44100)),
        dict(id="x17", track="Sheep", dur=75, segs=[dict(at=30.0, bgm=60.0, len=16.0)],
             noise=dict(snr=-9.0, crowd=3), teacher=dict(talk=True, count=False, level=3.0)),
        dict(id="x18", track="bath", dur=80, segs=[dict(at=41.0, bgm=20.0, len=15.0)],
             noise=dict(snr=-9.0, crowd=2), room=dict(rt60=0.6, drr=2.0)),
        dict(id="x19", track="underwater", dur=60, segs=[dict(at=2.0, bgm=0.0)],
             noise=dict(snr=0.0, crowd=3), room=dict(rt60=1.2, drr=-3.0), speaker=dict(band=True, drive=1.5),
             agc=True, audio=dict(kbps=48)),
        # --- what already holds and must keep holding
        dict(id="x20", track="snow", dur=150, segs=[dict(at=40.0, bgm=5.0)],
             interference=dict(track="City", wall=False, level=0.0, at=2.0, len=35.0, bgm=30.0), **NOISY),
        dict(id="x21", track="Desert", dur=110, segs=[dict(at=3.0, bgm=100.0, len=60.0)],
             interference=dict(track="Rock", wall=False, level=0.0, at=68.0, len=None, bgm=10.0)),
        dict(id="x22", track="snow", dur=360, segs=[dict(at=4.0, bgm=0.0, len=90.0), dict(at=120.0, bgm=0.0,
                                                                                        len=100.0),
                                                    dict(at=240.0, bgm=30.0, len=110.0)],
             **COUNT, noise=dict(snr=10.0, crowd=3)),
        dict(id="x23", track="underwater", dur=80, segs=[dict(at=3.0, bgm=0.0, rate=0.8, mode="stretch")],
             **COUNT),
        dict(id="x24", track="Nature", dur=80, segs=[dict(at=1.5, bgm=10.0, rate=1.04)], **NOISY),
        dict(id="x25", track="City", dur=60, segs=[dict(at=2.0, bgm=50.0, rate=1.06)], **ECHO),
        dict(id="x26", track="hell", dur=14, segs=[dict(at=0.0, bgm=40.0)], **NOISY),
        dict(id="x27", track="Golf", dur=120, segs=[dict(at=50.0, bgm=60.0, len=25.0)],
             teacher=dict(talk=True, count=False, level=6.0), noise=dict(snr=4.0, crowd=3)),
        dict(id="x28", track="Compost", dur=90, segs=[dict(at=3.0, bgm=0.0, len=30.0), dict(at=45.0, bgm=0.0)],
             **COUNT),
        dict(id="x29", track="Freeway", dur=70, segs=[dict(at=1.0, bgm=10.0, rate=0.75)],
             bgm=dict(fmt="m4a")),
        dict(id="x30", track="Halloween", dur=70, segs=[dict(at=2.0, bgm=0.0, rate=0.82, mode="stretch")],
             noise=dict(snr=6.0, crowd=3), bgm=dict(fmt="ogg")),
        # --- negatives
        dict(id="x31", track="Castle", dur=60, segs=[dict(at=2.0, bgm=30.0)], bgm_track="City", negative=True,
             **NOISY),
        dict(id="x32", track="Rock", dur=80, segs=[dict(at=2.0, bgm=0.0, len=35.0)], bgm_track="Jungle",
             negative=True, interference=dict(track="Sheep", wall=False, level=0.0, at=40.0, len=None, bgm=5.0)),
        dict(id="x33", track="Fruit", dur=50, segs=[], negative=True, teacher=dict(talk=True, count=True, level=0.0),
             interference=dict(track=None, claps=4, clap_level=6.0, thumps=True, thump_level=3.0)),
        dict(id="x34", track="Olympics", dur=45, segs=[], negative=True, **NOISY),
        dict(id="x35", track="bath", dur=60, segs=[dict(at=0.0, bgm=0.0, rate=0.9)], bgm_track="oriental",
             negative=True, **COUNT),
        dict(id="x36", track="Desert", dur=60, segs=[dict(at=1.0, bgm=40.0)], bgm_track="Golf", negative=True,
             room=dict(rt60=1.5, drr=-4.0)),
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/corpus-struct")
    ap.add_argument("--jobs", default="2")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    mc.SETS["structures"] = STRUCTURES
    sys.argv = ["make_corpus.py", "--set", "structures", "--out", args.out, "--jobs", args.jobs]
    if args.only:
        sys.argv += ["--only", args.only]
    mc.main()


if __name__ == "__main__":
    main()
