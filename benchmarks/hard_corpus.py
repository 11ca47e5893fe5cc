"""Generate a harder corpus than the dev set with the shared generator (../shared/corpus).

Cases the dev set lacks: two run-throughs, a pause with the music resumed, pitch-kept practice
speed (sox), 0.8x speed with a song file shorter than the video, +200 ppm drift, 15 s of music in
a 60 s video, a neighbouring studio's song with applause and footsteps, 0 dB SNR with heavy
reverb, an unrelated song, and talking with no music. Not a target to tune to: a check that the
engines' mechanisms work on conditions the dev set does not show.

    /tmp/venv-corpus/bin/python benchmarks/hard_corpus.py --out /tmp/corpus-hard
    python ../shared/corpus/score.py --corpus /tmp/corpus-hard --cmd 'python -m beatsync align {dance} {bgm}'

Needs what ../shared/corpus/setup.sh installs (run that first).
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "corpus"))

import make_corpus as mc  # noqa: E402

HARD = {
    "seed": 777,
    "tracks": dict(mc.DEV_SET["tracks"]),
    "cases": [
        dict(id="h01", track="Beach", dur=90, segs=[dict(at=3.0, bgm=0.0, len=35.0), dict(at=45.0, bgm=10.0)],
             teacher=dict(talk=True, count=True, level=-2.0)),
        dict(id="h02", track="intro", dur=60, segs=[dict(at=2.0, bgm=0.0, rate=0.85, mode="stretch")]),
        dict(id="h03", track="Art", dur=60, segs=[dict(at=1.0, bgm=20.0, rate=1.0002)], noise=dict(snr=8.0, crowd=2)),
        dict(id="h04", track="fb1", dur=40, segs=[dict(at=0.0, bgm=0.0)], bgm_track="Brick", negative=True),
        dict(id="h05", track="fb1", dur=40, segs=[], negative=True),
        dict(id="h06", track="Brick", dur=60, segs=[dict(at=20.0, bgm=30.0, len=15.0)]),
        dict(id="h07", track="fb2", dur=60, segs=[dict(at=2.0, bgm=0.0)],
             interference=dict(track="Art", level=-3.0, claps=2, thumps=True)),
        dict(id="h08", track="Beach", dur=60, segs=[dict(at=2.0, bgm=0.0)], noise=dict(snr=0.0, crowd=3),
             room=dict(rt60=1.3, drr=-3.0)),
        dict(id="h09", track="intro", dur=70, segs=[dict(at=2.0, bgm=0.0, rate=0.8, mode="speed")],
             bgm=dict(fmt="m4a", excerpt=[0.0, 40.0])),
        dict(id="h10", track="Art", dur=80, segs=[dict(at=2.0, bgm=0.0, len=30.0), dict(at=36.0, bgm=30.0)]),
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/corpus-hard")
    args = ap.parse_args()
    mc.SETS["hard"] = HARD
    sys.argv = ["make_corpus.py", "--set", "hard", "--out", args.out]
    mc.main()


if __name__ == "__main__":
    main()
