"""Accuracy and calibration of the alignment engines over whole corpora, in one run.

For every case of every corpus given (made by ../shared/corpus: the dev set, `hard_corpus.py`,
`structures_corpus.py`, its `--random` sets), the class video and the song are decoded the way a job
decodes them, both engines align them in-process (sharing one `Signals`, as a job does), and each answer
is scored by the shared scorer (../shared/corpus/score.py: main-offset error, every truth segment's
error, tempo; a negative is right when refused or below confidence 0.3). Printed:

* per engine: the main offset within 20 ms, every truth segment within 20 ms, tempo error per segment,
  answers with confidence >= 0.5 that are more than 100 ms off (target: none), negatives refused;
* the reliability table: confidence bin -> cases and the share within 20 ms (refusals of positives
  count in their own row);
* every case that missed, with what was answered.

    python benchmarks/calibration.py /tmp/corpus-dev /tmp/corpus-struct /tmp/corpus-random [--jobs 2]
        [--engines modular,v2] [--json /tmp/calibration.json]

Not a test: the corpora take minutes to make and the run takes minutes. Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "corpus"))

import score as scorer  # noqa: E402  (../shared/corpus/score.py)

from beatsync import pipeline  # noqa: E402
from beatsync.align import align  # noqa: E402
from beatsync.align.lines import Signals  # noqa: E402
from beatsync.analysis import ANALYSIS_SR  # noqa: E402
from beatsync.errors import AlignmentError  # noqa: E402

#: confidence bins of the reliability table (lower bounds)
BINS = (0.0, 0.3, 0.5, 0.7, 0.9)


def run_case(args: tuple[str, dict, tuple[str, ...]]) -> list[dict]:
    """Decode one case and align it with each engine; one scored row per engine."""
    corpus, case, engines = args
    inp = pipeline.load_inputs(os.path.join(corpus, case["dance"]), os.path.join(corpus, case["bgm"]),
                               pipeline.Progress(None))
    sig = Signals(inp.dance_y, inp.bgm_y, sr=ANALYSIS_SR)
    rows = []
    for eng in engines:
        t0 = time.perf_counter()
        try:
            al = align(inp.dance_y, inp.bgm_y, sr=ANALYSIS_SR, engine=eng, signals=sig).shifted(inp.dance.audio_origin_s)
            pred = al.to_dict()
            pred["warnings"] = al.warnings
        except AlignmentError as e:
            pred = {"error": e.message}
        seconds = time.perf_counter() - t0
        if scorer.is_negative(case):
            row = scorer.score_negative(pred)
            row["negative"] = True
        elif "error" in pred:
            row = {"status": "refused", "offset_err_ms": math.inf, "seg_errs_ms": [None] * len(case["truth"]["segments"])}
        else:
            row = scorer.score_prediction(case, pred)
            truth_rates = [s["rate"] for s in case["truth"]["segments"]]
            row["seg_rate_errs"] = rate_errors(case, pred, truth_rates)
        row.update(id=case["id"], corpus=os.path.basename(corpus), engine=eng, seconds=round(seconds, 2),
                   confidence=pred.get("confidence"), warnings=pred.get("warnings", []),
                   n_segments=len(pred.get("segments", [])))
        rows.append(row)
    return rows


def rate_errors(case: dict, pred: dict, truth_rates: list[float]) -> list[float | None]:
    """Relative rate error of the predicted segment that overlaps each truth segment most."""
    out = []
    for ts, r in zip(case["truth"]["segments"], truth_rates, strict=True):
        best, ov = None, 0.0
        for ps in pred.get("segments", []):
            o = min(ts["dance_end_s"], ps["dance_end_s"]) - max(ts["dance_start_s"], ps["dance_start_s"])
            if o > ov:
                best, ov = ps, o
        out.append(None if best is None else abs(best["rate"] / r - 1))
    return out


def summarise(rows: list[dict], engine: str) -> dict:
    pos = [r for r in rows if r["engine"] == engine and not r.get("negative")]
    neg = [r for r in rows if r["engine"] == engine and r.get("negative")]
    ok = [r for r in pos if r.get("offset_err_ms", math.inf) <= 20]
    segs = [e for r in pos for e in r.get("seg_errs_ms", [])]
    rates = [e for r in pos for e in r.get("seg_rate_errs", []) if e is not None]
    bad = [r["id"] for r in pos if (r.get("confidence") or 0) >= 0.5 and r.get("offset_err_ms", math.inf) > 100]
    table = []
    for i, lo in enumerate(BINS):
        hi = BINS[i + 1] if i + 1 < len(BINS) else 1.01
        inbin = [r for r in pos if r.get("confidence") is not None and lo <= r["confidence"] < hi]
        table.append({"bin": f"{lo:.1f}-{min(hi, 1.0):.1f}", "n": len(inbin),
                      "within_20ms": sum(r.get("offset_err_ms", math.inf) <= 20 for r in inbin)})
    table.append({"bin": "refused", "n": sum(r["status"] == "refused" for r in pos), "within_20ms": 0})
    return {"engine": engine, "positives": len(pos), "main_within_20ms": len(ok),
            "segments": len(segs), "segments_within_20ms": sum(e is not None and e <= 20 for e in segs),
            "max_rate_error": max(rates, default=0.0), "rate_errors_over_0.1pct": sum(e > 0.001 for e in rates),
            "confident_and_over_100ms": bad, "negatives": len(neg),
            "negatives_refused": sum(r["status"] == "ok" for r in neg),
            "seconds_total": round(sum(r["seconds"] for r in pos + neg), 1), "reliability": table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpora", nargs="+", help="corpus folders (each with cases.json)")
    ap.add_argument("--engines", default="modular,v2")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    engines = tuple(args.engines.split(","))
    jobs = []
    for c in args.corpora:
        with open(os.path.join(c, "cases.json")) as f:
            jobs += [(c, case, engines) for case in json.load(f)["cases"]]
    t0 = time.time()
    with mp.get_context("fork").Pool(args.jobs) as pool:
        rows = [r for rs in pool.imap(run_case, jobs, chunksize=1) for r in rs]
    summaries = [summarise(rows, e) for e in engines]
    for s in summaries:
        p = s["positives"]
        print(f"\n== {s['engine']}: {p} positive cases, {s['negatives']} negative")
        print(f"main offset within 20 ms: {s['main_within_20ms']}/{p} = {s['main_within_20ms'] / max(p, 1):.1%}")
        print(f"truth segments within 20 ms: {s['segments_within_20ms']}/{s['segments']} = "
              f"{s['segments_within_20ms'] / max(s['segments'], 1):.1%}")
        print(f"tempo: largest error per segment {s['max_rate_error']:.2e}, over 0.1 %: {s['rate_errors_over_0.1pct']}")
        print(f"confidence >= 0.5 and more than 100 ms off: {len(s['confident_and_over_100ms'])} "
              f"{s['confident_and_over_100ms']}")
        print(f"negatives refused (or confidence < 0.3): {s['negatives_refused']}/{s['negatives']}")
        print(f"alignment time, all cases: {s['seconds_total']} s")
        print("reliability:  confidence   cases   within 20 ms")
        for b in s["reliability"]:
            share = f"{b['within_20ms'] / b['n']:.0%}" if b["n"] else "-"
            print(f"              {b['bin']:>10} {b['n']:7d}   {share:>6}")
    print("\nmisses (main > 20 ms, a truth segment missed or > 20 ms, a negative answered):")
    for r in rows:
        miss = (r["status"] not in ("ok",) or r.get("offset_err_ms", 0) > 20
                or any(e is None or e > 20 for e in r.get("seg_errs_ms", [])))
        if miss:
            segs = ",".join("-" if e is None else f"{e:.1f}" for e in r.get("seg_errs_ms", []))
            print(f"  {r['engine']:7s} {r['corpus']}/{r['id']}: {r['status']}, main {r.get('offset_err_ms', 0):.1f} ms, "
                  f"segments [{segs}], confidence {r.get('confidence')}, {'; '.join(r['warnings'])[:150]}")
    print(f"\n{len(jobs)} cases in {time.time() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summaries": summaries, "rows": rows}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
