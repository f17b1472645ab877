"""The Review gallery's filtered images, read from the dataset's store a page at a time: the images the
health check finds suspicious come first (most suspicious first), then the rest in import order, as a sort
of the whole table by suspicion would give them, without loading that table."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from imgcls.store import manifestquery

# the columns the gallery and the one-at-a-time view show
COLUMNS = ["path", "label", "split", "hash", "width", "height", "excluded", "source", "note"]


def kind_words(kinds, title) -> str:
    """A row's finding kinds as words for its caption."""
    return ", ".join(title(k).lower() for k in kinds or [])


@dataclass
class Filtered:
    """The images the gallery's filters keep, with the count and pages of them."""

    name: str
    where: dict  # store filters: label, split, excluded, paths
    suspicious: pd.DataFrame  # the matching images with a suspicion above 0, most suspicious first
    total: int
    images: dict = field(default_factory=dict)  # the report's per-image map: suspicion and kinds
    title: object = str  # a finding kind as words

    def __len__(self) -> int:
        return self.total

    @property
    def any_suspicion(self) -> bool:
        """Whether the order puts suspicious images first."""
        return bool(len(self.suspicious))

    def _rest(self) -> dict:
        return {**self.where, "not_paths": list(self.suspicious["path"])}

    def page(self, offset: int, limit: int) -> pd.DataFrame:
        """Rows `offset`…`offset + limit` in the gallery's order, with their suspicion and finding kinds."""
        first = self.suspicious.iloc[offset:offset + limit][COLUMNS]
        more = limit - len(first)
        parts = [first]
        if more > 0:
            start = max(offset - len(self.suspicious), 0)
            parts.append(manifestquery.page_rows(self.name, start, more, self._rest(), columns=COLUMNS))
        rows = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else first
        return self._described(rows.reset_index(drop=True))

    def index_of(self, path: str | None) -> int | None:
        """Where the image at `path` stands in the gallery's order, or None when the filters leave it out."""
        if path is None:
            return None
        hits = (self.suspicious["path"] == path).to_numpy().nonzero()[0]
        if len(hits):
            return int(hits[0])
        at = manifestquery.position(self.name, path, self._rest())
        return None if at is None else len(self.suspicious) + at

    def path_at(self, i: int) -> str | None:
        """The path of the i-th image in the gallery's order (None past the end)."""
        if not 0 <= i < self.total:
            return None
        if i < len(self.suspicious):
            return str(self.suspicious["path"].iloc[i])
        rest = manifestquery.page_rows(self.name, i - len(self.suspicious), 1, self._rest(), columns=["path"])
        return str(rest["path"].iloc[0]) if len(rest) else None

    def count_of(self, paths) -> int:
        """How many of `paths` the filters keep."""
        return manifestquery.count_rows(self.name, **{**self.where, "paths": list(paths)})

    def _described(self, rows: pd.DataFrame) -> pd.DataFrame:
        info = [self.images.get(p) or {} for p in rows["path"]]
        return rows.assign(suspicion=[float(i.get("suspicion") or 0.0) for i in info],
                           kinds=[kind_words(i.get("kinds"), self.title) for i in info])


def select(name: str, images: dict, where: dict, title=str) -> Filtered:
    """The images matching `where` (label, split, excluded, paths), ordered by the report's suspicion."""
    scores = {p: float((info or {}).get("suspicion") or 0.0) for p, info in images.items()}
    scores = {p: s for p, s in scores.items() if s > 0}
    suspicious = manifestquery.rows_by_paths(name, scores, columns=[*COLUMNS, "ord"])
    keep = pd.Series(True, index=suspicious.index)
    for key in ("label", "split"):
        if where.get(key):
            keep &= suspicious[key] == where[key]
    if where.get("excluded") is not None:
        keep &= suspicious["excluded"] == bool(where["excluded"])
    if where.get("paths") is not None:
        keep &= suspicious["path"].isin(set(where["paths"]))
    suspicious = suspicious[keep].assign(score=lambda d: d["path"].map(scores))
    suspicious = suspicious.sort_values(["score", "ord"], ascending=[False, True], kind="stable")
    return Filtered(name, where, suspicious.reset_index(drop=True), manifestquery.count_rows(name, **where), images, title)
