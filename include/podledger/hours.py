"""Frames of several hours at once: every frame carries an ``hour_start`` column, so a day's 24 hours are computed in
one vectorised pass (usage and allocation key everything by the hour) and hours never mix."""

from __future__ import annotations

import datetime as dt

import polars as pl

HOUR = "hour_start"
# The hour given to frames that carry none (one hour's frames); dropped again from what is returned.
_ANY_HOUR = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def stamp_hour(frames: dict[str, pl.DataFrame], hour: dt.datetime) -> dict[str, pl.DataFrame]:
    """One hour's frames with that hour as their ``hour_start`` column (the shape of a stacked range)."""
    return {name: frame.with_columns(pl.lit(hour).cast(pl.Datetime("us", "UTC")).alias(HOUR))
            for name, frame in frames.items()}


def stack_hours(hour_frames: list[tuple[dt.datetime, dict[str, pl.DataFrame]]]) -> dict[str, pl.DataFrame]:
    """Stack several hours' frames into one frame per metric with an ``hour_start`` column (empty hours add nothing)."""
    utc = pl.Datetime("us", "UTC")
    names = dict.fromkeys(name for _, frames in hour_frames for name in frames)
    stacked = {}
    for name in names:
        parts = [(hour, frames[name]) for hour, frames in hour_frames if name in frames and frames[name].height]
        if not parts:
            hour, frames = next((h, f) for h, f in hour_frames if name in f)
            stacked[name] = stamp_hour({name: frames[name]}, hour)[name]
            continue
        hours = pl.select(pl.Series(HOUR, [hour for hour, _ in parts], dtype=utc)
                          .repeat_by(pl.Series([frame.height for _, frame in parts], dtype=pl.UInt32)).explode())
        stacked[name] = pl.concat([frame for _, frame in parts], how="diagonal_relaxed").with_columns(hours[HOUR])
    return stacked


def with_hour(frames: dict[str, pl.DataFrame]) -> tuple[dict[str, pl.DataFrame], bool]:
    """``frames`` with an hour column everywhere; True when it was added here (so the caller drops it again)."""
    if all(HOUR in frame.columns for frame in frames.values()):
        return frames, False
    return {name: frame if HOUR in frame.columns else frame.with_columns(
        pl.lit(_ANY_HOUR).cast(pl.Datetime("us", "UTC")).alias(HOUR)) for name, frame in frames.items()}, True


def returned(frame: pl.DataFrame, added: bool) -> pl.DataFrame:
    """``frame`` without the hour column :func:`with_hour` added (kept when the caller's frames had it)."""
    return frame.drop(HOUR) if added and HOUR in frame.columns else frame
