"""Interactive beat-grid plots (plotly): the class recording's onset strength and beats, the song's
beats mapped through an alignment onto the class video's timeline, the cut head/tail and the
run-throughs as bands, and the alternative placements' scores."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from beatsync import contract
from beatsync.align import Alignment
from ui.i18n import t

PLOT_CONFIG = {"scrollZoom": False, "displaylogo": False}  # the page scrolls over a plot; zoom by dragging
CLASS_COLOR, SONG_COLOR, ONSET_COLOR = "#1f6fb4", "#d62728", "#9bb0c0"
CLASS_Y, SONG_Y = 2.25, 2.0  # where the two rows of beat ticks sit, above the onset curve (0..2)


def _ticks(x, y: float, *, name: str, color: str) -> go.Scattergl:
    return go.Scattergl(x=list(x), y=[y] * len(x), mode="markers", name=name, hovertemplate="%{x:.3f} s",
                        marker={"symbol": "line-ns-open", "size": 16, "line": {"width": 2, "color": color}})


def on_phone() -> bool:
    """A touch device (from the browser's User-Agent): there a drag must scroll the page, not zoom."""
    ua = (st.context.headers or {}).get("User-Agent", "")
    return any(k in ua for k in ("Mobile", "Android", "iPhone", "iPad"))


def _layout(fig: go.Figure, *, height: int = 380, touch: bool = False) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 90}, dragmode=False if touch else "zoom",
                      legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0},
                      xaxis={"title": t("plot.time")}, yaxis={"visible": False, "range": [-0.05, 2.5]},
                      hovermode="closest")
    return fig


def onset_trace(part: contract.OnsetBeats) -> go.Scattergl:
    onset = np.asarray(part.onset, dtype=float)
    x = part.onset_t0_s + np.arange(len(onset)) / part.frame_rate
    return go.Scattergl(x=x, y=onset, mode="lines", name=t("plot.onset"), hoverinfo="skip",
                        line={"width": 1, "color": ONSET_COLOR})


def beat_grid_figure(grid: contract.BeatGrid, alignment: Alignment | None, *, variant: str = "",
                     trim: contract.Trim | None = None, video_duration_s: float | None = None, nudge_ms: float = 0.0,
                     touch: bool = False) -> go.Figure:
    """The class recording's beats against the song's beats mapped through ``alignment`` (moved by
    ``nudge_ms``), with the cut parts and the run-throughs as bands."""
    fig = go.Figure()
    cls, song = grid.class_, grid.song
    fig.add_trace(onset_trace(cls))
    fig.add_trace(_ticks(cls.beats_s, CLASS_Y, name=t("plot.class_beats"), color=CLASS_COLOR))
    if alignment is not None:
        al = alignment
        if nudge_ms:
            al = al.shifted(nudge_ms / 1000.0)
        fig.add_trace(_ticks(al.dance_times(song.beats_s), SONG_Y, name=t("plot.song_beats", variant=variant),
                             color=SONG_COLOR))
        for i, s in enumerate(al.segments, 1):
            fig.add_vrect(x0=s.dance_start_s, x1=s.dance_end_s, fillcolor="#2ca02c", opacity=0.07, line_width=0,
                          annotation_text=t("plot.segment", i=i), annotation_position="bottom right",
                          annotation_font_size=10)
    if trim is not None:
        end = video_duration_s or trim.end_s
        for a, b in ((0.0, trim.start_s), (trim.end_s, end)):
            if b - a > 0.01:
                fig.add_vrect(x0=a, x1=b, fillcolor="#555", opacity=0.18, line_width=0,
                              annotation_text=t("plot.trimmed"), annotation_position="bottom left",
                              annotation_font_size=10)
    return _layout(fig, touch=touch)


def alternatives_figure(alignment: contract.Alignment) -> go.Figure | None:
    """The chosen placement and the alternatives (repeated sections) with their match scores."""
    alts = alignment.alternatives
    if not alts:
        return None
    labels = [f"{alignment.offset_s:.2f} s ({t('task.chosen')})"] + [f"{a.offset_s:.2f} s" for a in alts]
    scores = [1.0] + [a.score for a in alts]
    colors = [CLASS_COLOR] + ["#aaa"] * len(alts)
    fig = go.Figure(go.Bar(x=labels, y=scores, marker_color=colors, hovertemplate="%{y:.0%}<extra></extra>"))
    fig.update_layout(height=240, margin={"l": 10, "r": 10, "t": 10, "b": 40},
                      yaxis={"title": t("plot.score"), "tickformat": ".0%", "range": [0, 1.05]},
                      xaxis={"title": t("plot.offset"), "type": "category"})
    return fig


def beats_figure(beats: contract.FileBeats, *, touch: bool = False) -> go.Figure:
    """One file's onset strength and beats (the beat explorer)."""
    fig = go.Figure()
    fig.add_trace(onset_trace(beats))
    fig.add_trace(_ticks(beats.beats_s, CLASS_Y, name=t("plot.beats"), color=CLASS_COLOR))
    fig = _layout(fig, touch=touch)
    fig.update_layout(xaxis={"title": t("explore.time")})
    return fig
