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
    /tmp/venv-corpus/bin/python benchmarks/structures_corpus.py --random 40 --seed 7 --out /tmp/corpus-random
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


def random_set(n: int, seed: int) -> dict:
    """``n`` cases drawn at random (seeded): a structure, a song, and recording conditions each, so that a
    change is measured on recordings nobody looked at while making it."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = sorted(TRACKS)
    lengths = {"Castle": 354, "City": 298, "Compost": 304, "Desert": 285, "EarthRise": 176, "Freeway": 225,
               "Fruit": 208, "Golf": 246, "Halloween": 208, "Jungle": 219, "Nature": 125, "Olympics": 282,
               "Rock": 274, "Sheep": 250, "bath": 200, "hell": 113, "oriental": 207, "pirate": 260, "snow": 149,
               "underwater": 174}
    kinds = ["take", "take", "two_runs", "slow_full", "slow_full", "cut", "repeat", "two_edits", "buried", "other_song",
             "short", "negative_song", "negative_none"]
    cases = []
    for i in range(n):
        track = names[rng.integers(len(names))]
        song = lengths[track]
        kind = kinds[rng.integers(len(kinds))]
        r = lambda a, b: round(float(rng.uniform(a, b)), 2)  # noqa: E731
        start = r(0.0, 6.0)
        spec = dict(id=f"r{i + 1:02d}", track=track)
        if kind == "take":
            b0 = r(0.0, song * 0.4)
            spec.update(dur=round(min(song - b0, r(40, 150)) + start), segs=[dict(at=start, bgm=b0,
                                                                                   rate=float(rng.choice([1.0, 1.0, 1.0001])))])
        elif kind == "two_runs":
            l1 = r(20, 40)
            gap = r(4, 15)
            spec.update(dur=round(start + l1 + gap + 45), segs=[dict(at=start, bgm=0.0, len=l1),
                                                                 dict(at=round(start + l1 + gap, 2), bgm=r(0, 20))])
        elif kind == "slow_full":
            rate = r(0.75, 0.92)
            mode = str(rng.choice(["speed", "stretch"]))
            l1 = r(25, 45)
            gap = r(3, 12)
            spec.update(dur=round(start + l1 + gap + 45), segs=[dict(at=start, bgm=0.0, len=l1, rate=rate, mode=mode),
                                                                 dict(at=round(start + l1 + gap, 2), bgm=0.0)])
        elif kind in ("cut", "repeat"):
            b0 = r(0, song * 0.3)
            l1 = r(20, 40)
            jump = r(8, 30) * (1 if kind == "cut" else -1)
            b1 = max(0.0, round(b0 + l1 + jump, 2))
            spec.update(dur=round(start + l1 + 40), segs=[dict(at=start, bgm=b0, len=l1),
                                                           dict(at=round(start + l1, 2), bgm=b1)])
        elif kind == "two_edits":
            l1, l2 = r(15, 30), r(15, 30)
            b1 = round(l1 + r(5, 20), 2)
            b2 = max(0.0, round(b1 + l2 - r(5, 15), 2))
            spec.update(dur=round(start + l1 + l2 + 35), segs=[dict(at=start, bgm=0.0, len=l1),
                                                                dict(at=round(start + l1, 2), bgm=b1, len=l2),
                                                                dict(at=round(start + l1 + l2, 2), bgm=b2)])
        elif kind == "buried":
            at = r(10, 40)
            spec.update(dur=round(at + r(25, 40)), segs=[dict(at=at, bgm=r(0, song * 0.5), len=r(14, 20))],
                        noise=dict(snr=r(-9, -4), crowd=int(rng.integers(1, 4))))
        elif kind == "other_song":
            other = names[rng.integers(len(names))]
            if other == track:
                other = names[(names.index(track) + 1) % len(names)]
            spec.update(dur=100, segs=[dict(at=45.0, bgm=r(0, 30))],
                        interference=dict(track=other, wall=False, level=0.0, at=2.0, len=38.0, bgm=r(0, 30)))
        elif kind == "short":
            spec.update(dur=round(r(12, 20)), segs=[dict(at=0.0, bgm=r(0, song * 0.5))])
        elif kind == "negative_song":
            other = names[(names.index(track) + 1 + int(rng.integers(len(names) - 1))) % len(names)]
            spec.update(dur=round(r(40, 70)), segs=[dict(at=start, bgm=r(0, 40))], bgm_track=other, negative=True)
        else:
            spec.update(dur=round(r(30, 60)), segs=[], negative=True,
                        teacher=dict(talk=True, count=True, level=0.0),
                        interference=dict(track=None, claps=int(rng.integers(0, 5)), thumps=bool(rng.integers(2))))
        if kind != "buried" and rng.random() < 0.7:
            spec["noise"] = dict(snr=r(0, 20), crowd=int(rng.integers(0, 4)))
        if rng.random() < 0.6:
            spec["room"] = dict(rt60=r(0.2, 1.5), drr=r(-4, 8))
        if rng.random() < 0.5:
            spec.setdefault("teacher", dict(talk=True, count=bool(rng.integers(2)), level=r(-6, 4)))
        if rng.random() < 0.25:
            spec["speaker"] = dict(band=True, drive=r(0, 2.5))
        if rng.random() < 0.2:
            spec["agc"] = True
        spec["audio"] = dict(kbps=int(rng.choice([48, 64, 96, 128])), sr=int(rng.choice([44100, 48000])))
        spec["bgm"] = dict(fmt=str(rng.choice(["mp3", "m4a", "ogg", "flac", "wav"])))
        cases.append(spec)
    return {"seed": seed, "tracks": TRACKS, "cases": cases}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/corpus-struct")
    ap.add_argument("--jobs", default="2")
    ap.add_argument("--only", default="")
    ap.add_argument("--random", type=int, default=0, help="instead of the fixed set, this many random cases")
    ap.add_argument("--seed", type=int, default=1, help="seed of --random")
    args = ap.parse_args()
    mc.SETS["structures"] = random_set(args.random, args.seed) if args.random else STRUCTURES
    sys.argv = ["make_corpus.py", "--set", "structures", "--out", args.out, "--jobs", args.jobs]
    if args.only:
        sys.argv += ["--only", args.only]
    mc.main()


if __name__ == "__main__":
    main()
