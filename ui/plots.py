"""Interactive beat-grid plots (plotly), each with a text summary for screen readers.

The job's grid (`beat_grid_figure`) is honest (`beatsync.beatgrid`): the song's beats mapped through
the alignment (per segment, with its rate) against the class recording's own onsets at those beats,
one metrical level and phase, with the run-throughs as bands, the edit points as lines and the cut
head and tail shaded. It opens on about 8 seconds around the start of the music (beats 0.5 s apart
are readable) with a range slider under it to move along; the time axis alone zooms (the vertical
one is fixed), so a phone's zoom never empties the plot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from beatsync import beatgrid, contract
from beatsync.beatgrid import BeatMatch
from ui.i18n import clock, seconds, t

PLOT_CONFIG = {"scrollZoom": False, "displaylogo": False,  # the page scrolls over a plot
               "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}
#: on a touch screen the range slider moves and zooms along the time axis: no toolbar over the legend
TOUCH_CONFIG = {**PLOT_CONFIG, "displayModeBar": False}


def plot_config(touch: bool) -> dict:
    return TOUCH_CONFIG if touch else PLOT_CONFIG
CLASS_COLOR, SONG_COLOR, ONSET_COLOR = "#1f5f9e", "#c0392b", "#8ea3b5"
CLASS_Y, SONG_Y = 2.25, 2.0  # where the two rows of beat ticks sit, above the onset curve (0..2)
WINDOW_S = 8.0  # the time the grid opens on


def _ticks(x, y: float, *, name: str, color: str) -> go.Scattergl:
    return go.Scattergl(x=list(x), y=[y] * len(x), mode="markers", name=name, hovertemplate=t("plot.hover_s"),
                        marker={"symbol": "line-ns-open", "size": 16, "line": {"width": 2, "color": color}})


def on_phone() -> bool:
    """A touch device (from the browser's User-Agent): there a drag must scroll the page, not zoom."""
    ua = (st.context.headers or {}).get("User-Agent", "")
    return any(k in ua for k in ("Mobile", "Android", "iPhone", "iPad"))


def opening_window(start_s: float, end_s: float | None = None, *, width_s: float = WINDOW_S) -> list[float]:
    """The time range a grid opens on: ``width_s`` from just before ``start_s`` (never past ``end_s``)."""
    a = max(0.0, start_s - 1.0)
    if end_s is not None and a + width_s > end_s:
        a = max(0.0, end_s - width_s)
    return [round(a, 3), round(a + width_s, 3)]


def _layout(fig: go.Figure, *, window: list[float], title_x: str, height: int = 400, touch: bool = False
            ) -> go.Figure:
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10}, dragmode=False if touch else "zoom",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "font": {"size": 12}},
        xaxis={"title": title_x, "range": window, "rangeslider": {"visible": True, "thickness": 0.08}},
        yaxis={"visible": False, "range": [-0.05, 2.5], "fixedrange": True}, hovermode="closest")
    return fig


def onset_trace(part: contract.OnsetBeats, *, name: str) -> go.Scattergl:
    onset = np.asarray(part.onset, dtype=float)
    x = part.onset_t0_s + np.arange(len(onset)) / part.frame_rate
    return go.Scattergl(x=x, y=onset, mode="lines", name=name, hoverinfo="skip",
                        line={"width": 1, "color": ONSET_COLOR})


@dataclass
class Grid:
    """A beat-grid figure, its text summary, and whether the class beats could be matched."""

    figure: go.Figure
    summary: str
    match: BeatMatch


def beat_grid_figure(grid: contract.BeatGrid, alignment, *, variant: str,
                     trim: contract.Trim | None = None, video_duration_s: float | None = None, nudge_ms: float = 0.0,
                     edits: list[tuple[str, float]] = (), touch: bool = False) -> Grid:
    """The song's beats mapped through ``alignment`` (the contract's or the engine's; moved by ``nudge_ms``) against the class
    recording's onsets at those beats, the run-throughs, the edit points (``(code, video time)``) and
    the cut parts; opening on `WINDOW_S` around the start of the music."""
    cls, song = grid.class_, grid.song
    segs = sorted(alignment.segments, key=lambda g: g.dance_start_s)
    m = beatgrid.match_beats(song.beats_s, cls.onsets_s, segs, song_tempo_bpm=song.tempo_bpm,
                             nudge_s=nudge_ms / 1000.0)
    fig = go.Figure()
    fig.add_trace(onset_trace(cls, name=t("plot.onset")))
    fig.add_trace(_ticks(m.class_s[m.matched], CLASS_Y, name=t("plot.class_beats"), color=CLASS_COLOR))
    fig.add_trace(_ticks(m.mapped_s, SONG_Y, name=t("plot.song_beats", variant=variant), color=SONG_COLOR))
    shift = nudge_ms / 1000.0
    for i, g in enumerate(segs, 1):
        fig.add_vrect(x0=g.dance_start_s + shift, x1=g.dance_end_s + shift, fillcolor="#2ca02c", opacity=0.08,
                      line_width=0, annotation_text=t("plot.segment", i=i), annotation_position="bottom right",
                      annotation_font={"size": 11, "color": "#1e5b1e"})
    for code, at in edits:
        fig.add_vline(x=at + shift, line={"color": "#6b3fa0", "width": 2, "dash": "dash"},
                      annotation_text=t(f"plot.{code}"), annotation_position="top left",
                      annotation_font={"size": 11, "color": "#4b2a73"})
    end = video_duration_s or (trim.end_s if trim is not None else None)
    if trim is not None:
        for a, b in ((0.0, trim.start_s), (trim.end_s, end or trim.end_s)):
            if b - a > 0.01:
                fig.add_vrect(x0=a, x1=b, fillcolor="#555", opacity=0.18, line_width=0,
                              annotation_text=t("plot.trimmed"), annotation_position="bottom left",
                              annotation_font={"size": 11, "color": "#333"})
    start = segs[0].dance_start_s + shift if segs else 0.0
    _layout(fig, window=opening_window(start, end), title_x=t("plot.time"), touch=touch, height=360 if touch else 400)
    return Grid(fig, grid_summary(m, segs, variant=variant, edits=edits, shift=shift), m)


def grid_summary(m: BeatMatch, segs, *, variant: str, edits=(), shift: float = 0.0) -> str:
    """The grid in words (what a screen reader reads instead of the plot)."""
    if not len(m.mapped_s):
        return ""
    n_matched = int(m.matched.sum())
    mean = m.mean_error_ms()
    if mean is None or abs(mean) < 5:
        typical = m.median_error_ms()
        gap = t("grid.gap_small", ms=max(1, round(typical or 0)))
    elif mean > 0:
        gap = t("grid.gap_late", ms=round(mean))
    else:
        gap = t("grid.gap_early", ms=round(-mean))
    text = t("grid.summary", variant=variant, n=len(m.mapped_s), a=clock(float(m.mapped_s[0])),
             b=clock(float(m.mapped_s[-1])), m=n_matched, share=m.share_matched, gap=gap)
    if len(segs) > 1:
        text += " " + t("grid.runs", n=len(segs))
    if edits:
        text += " " + t("grid.edits", points=", ".join(f"{t('plot.' + c)} {clock(at + shift)}" for c, at in edits))
    return text


def alternatives_figure(alignment: contract.Alignment) -> tuple[go.Figure, str] | None:
    """The chosen placement and the alternatives (repeated sections) with their match scores, and the
    same in words."""
    alts = alignment.alternatives
    if not alts:
        return None
    labels = [f"{seconds(alignment.offset_s, 2)} ({t('task.chosen')})"] + [seconds(a.offset_s, 2) for a in alts]
    scores = [1.0] + [a.score for a in alts]
    colors = [CLASS_COLOR] + ["#767676"] * len(alts)
    fig = go.Figure(go.Bar(x=labels, y=scores, marker_color=colors, hovertemplate="%{y:.0%}<extra></extra>"))
    fig.update_layout(height=240, margin={"l": 10, "r": 10, "t": 10, "b": 40},
                      yaxis={"title": t("plot.score"), "tickformat": ".0%", "range": [0, 1.05], "fixedrange": True},
                      xaxis={"title": t("plot.offset"), "type": "category", "fixedrange": True})
    rest = ", ".join(f"{seconds(a.offset_s, 2)} ({a.score:.0%})" for a in alts)
    return fig, t("alts.summary", o=alignment.offset_s, n=len(alts), rest=rest)


def beats_figure(beats: contract.FileBeats, *, song: bool, touch: bool = False) -> go.Figure:
    """One file's onset strength and beats (the beat explorer); ``song``: the file is a song (not a video)."""
    fig = go.Figure()
    fig.add_trace(onset_trace(beats, name=t("plot.song_onset" if song else "plot.video_onset")))
    fig.add_trace(_ticks(beats.beats_s, CLASS_Y, name=t("plot.beats"), color=CLASS_COLOR))
    start = beats.beats_s[0] if beats.beats_s else 0.0
    return _layout(fig, window=opening_window(start, beats.duration_s), title_x=t("explore.time"), touch=touch,
                   height=340 if touch else 380)
