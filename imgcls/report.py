"""The health report as one self-contained HTML file: inline CSS, thumbnails as data URIs, no links out."""

from __future__ import annotations

import base64
from html import escape

import pandas as pd

from . import workspace
from .thumbs import thumbnail_path

THUMB_PX = 96  # big enough to recognise a photo, small enough that 400 thumbnails stay under 2 MB
SHOWN = 24  # thumbnails per finding: enough to see the pattern; the app lists them all
SEVERITY_COLOUR = {"high": "#c0392b", "medium": "#d68910", "low": "#7f8c8d"}
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
.score{font-size:3rem;font-weight:700} table{border-collapse:collapse;margin:1rem 0}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right} th{background:#f4f5f7}
td:first-child,th:first-child{text-align:left}
section{border-top:1px solid #ddd;padding-top:.6rem;margin-top:1.4rem}
.badge{display:inline-block;color:#fff;border-radius:4px;padding:0 .45rem;font-size:.8rem;margin-right:.4rem}
.grid{display:flex;flex-wrap:wrap;gap:.5rem} figure{margin:0;width:110px;font-size:.72rem;line-height:1.25}
figure img{width:96px;height:96px;display:block;border:1px solid #ddd}
figcaption{overflow-wrap:anywhere} .sugg{color:#c0392b} .more{color:#666;font-size:.85rem}
"""


def _thumb(folder, path: str, digest: str) -> str:
    """An <img> of the image as an inline JPEG, or a grey box when the file cannot be read."""
    try:
        data = thumbnail_path(folder, path, digest, THUMB_PX).read_bytes()
    except Exception:  # noqa: BLE001 - a missing or broken file must not stop the report
        return '<div style="width:96px;height:96px;background:#eee"></div>'
    return f'<img alt="" src="data:image/jpeg;base64,{base64.b64encode(data).decode("ascii")}">'


def _counts_table(df: pd.DataFrame) -> str:
    """Images per class and split, as an HTML table."""
    table = pd.crosstab(df["label"], df["split"]) if len(df) else pd.DataFrame()
    splits = [s for s in workspace.SPLITS if s in table.columns]
    head = "".join(f"<th>{escape(s)}</th>" for s in splits)
    rows = "".join(f"<tr><td>{escape(str(label))}</td>" + "".join(f"<td>{int(row[s])}</td>" for s in splits)
                   + f"<td>{int(row[splits].sum())}</td></tr>" for label, row in table.iterrows())
    return f"<table><tr><th>class</th>{head}<th>all</th></tr>{rows}</table>"


def _shown(finding: dict) -> list[str]:
    """The images to show: copies next to each other, then the rest by suspicion."""
    order = [p for g in finding.get("groups", []) for p in g] + finding["images"]
    return list(dict.fromkeys(order))[:SHOWN]


def _figure(folder, row, path: str, finding: dict) -> str:
    if row is None:  # an unreadable file: a name, no picture
        detail = finding["details"].get("reasons", {}).get(path, "")
        return f"<figure><figcaption>{escape(path)}<br>{escape(str(detail))}</figcaption></figure>"
    source = str(row["source"])  # the file name the user knows; the folders above it go in the tooltip
    text = (f'<span title="{escape(source)}">{escape(source.replace(chr(92), "/").rsplit("/", 1)[-1])}</span>'
            f"<br>{escape(str(row['label']))} · {escape(str(row['split']))}")
    if path in finding.get("suggested", {}):
        text += f'<br><span class="sugg">suggested: {escape(str(finding["suggested"][path]))}</span>'
    return f"<figure>{_thumb(folder, path, row['hash'])}<figcaption>{text}</figcaption></figure>"


def _section(folder, rows: dict, finding: dict) -> str:
    colour = SEVERITY_COLOUR.get(finding["severity"], "#555")
    figures = "".join(_figure(folder, rows.get(p), p, finding) for p in _shown(finding))
    more = len(finding["images"]) - min(len(finding["images"]), SHOWN)
    extra = f'<p class="more">… and {more} more.</p>' if more > 0 else ""
    return (f'<section><h2><span class="badge" style="background:{colour}">{escape(finding["severity"])}</span>'
            f'{escape(finding["title"])} ({len(finding["images"])})</h2><p>{escape(finding["message"])}</p>'
            f'<div class="grid">{figures}</div>{extra}</section>')


def render(name: str, report: dict) -> str:
    """The whole report as one HTML page (title, score, class/split counts, each finding with thumbnails)."""
    df = workspace.read_manifest(name)
    folder = workspace.dataset_dir(name)
    rows = {r["path"]: r for r in df.to_dict("records")}
    kept = df[~df["excluded"]]
    findings = report.get("findings", [])
    body = "".join(_section(folder, rows, f) for f in findings) or "<p>No problems found.</p>"
    note = f"<p>{escape(report['message'])}</p>" if report.get("message") else ""
    date = escape(str(report.get("created", ""))[:19].replace("T", " "))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Health of '
            f"{escape(name)}</title><style>{CSS}</style></head><body><h1>Dataset health: {escape(name)}</h1>"
            f'<p class="sub">{date} UTC · {int(report.get("images_checked", 0))} images checked · '
            f'{len(findings)} findings</p><div class="score">{int(report.get("score", 0))}/100</div>{note}'
            f"{_counts_table(kept)}{body}</body></html>")
