"""Kubernetes labels as the output table holds them: one JSON object text per object, built by polars expressions."""

from __future__ import annotations

import polars as pl

from podledger.hours import HOUR
from podledger.pod_frames import first_per_key


def _json_string(column: str) -> pl.Expr:
    """A string column as JSON text (quoted, escaped), vectorised: ``a"b`` -> ``"a\\"b"``."""
    return pl.struct(pl.col(column).alias("x")).struct.json_encode().str.slice(5).str.strip_suffix("}")


def labels_json(frame: pl.DataFrame | None, keys: list[str], alias: str) -> pl.DataFrame | None:
    """Return ``keys`` + the object's labels as a JSON object string (KSM's ``label_`` prefix removed, keys sorted).

    Built by polars expressions (no Python loop over objects), once per distinct label set of an object: labels
    rarely change, so a day's 24 hours of a pod cost one JSON text, not 24.
    """
    if frame is None or "labels" not in frame.columns:
        return None
    base = [k for k in keys if k != HOUR]
    frame = (first_per_key(frame, keys)
             .select(*keys, "labels", pl.col("labels").hash().alias("_set")))
    distinct = frame.unique(subset=[*base, "_set"], keep="first").with_row_index("_row")
    pairs = (distinct.select("_row", "labels").explode("labels").filter(pl.col("labels").is_not_null())
             .select("_row", pl.col("labels").struct.field("key").str.strip_prefix("label_").alias("k"),
                     pl.col("labels").struct.field("value").alias("v"))
             .sort("_row", "k")
             .select("_row", pl.concat_str(_json_string("k"), pl.lit(": "), _json_string("v")).alias("pair"))
             .group_by("_row", maintain_order=True).agg(pl.col("pair").str.join(", ")))
    texts = (distinct.select("_row", *base, "_set").join(pairs, on="_row", how="left")
             .select(*base, "_set", pl.concat_str(pl.lit("{"), pl.col("pair").fill_null(""), pl.lit("}")).alias(alias)))
    return (frame.select(*keys, "_set").join(texts, on=[*base, "_set"], how="left", maintain_order="left")
            .select(*keys, alias))
