"""The health report as one self-contained HTML file: inline CSS, thumbnails as data URIs, no links out.

It names the dataset version its findings describe. Images appear with the label and split they had when
checked, marked with what changed since (relabelled, moved, excluded, deleted); when the dataset has changed,
the very top of the page says so and from which version the findings are.
"""

from __future__ import annotations

import base64
from html import escape

import pandas as pd

from imgcls.health.check import GROUP_KINDS, explain
from imgcls.store import versions, workspace
from imgcls.vision.thumbs import thumbnail_path

THUMB_PX = 96  # big enough to recognise a photo, small enough that 400 thumbnails stay under 2 MB
SHOWN = 24  # thumbnails per finding: enough to see the pattern; the app lists them all
SHOWN_GROUPS = 12  # groups of copies per finding, each shown whole
SPLIT_WORDS = {"train": "train", "val": "validation", "test": "test"}
GREY_BOX = '<div style="width:96px;height:96px;background:#eee"></div>'  # a picture that cannot be shown
SEVERITY_COLOUR = {"high": "#c0392b", "medium": "#d68910", "low": "#7f8c8d"}
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
.stale{background:#fff4e5;border:2px solid #d68910;border-radius:6px;padding:.7rem 1rem;margin-bottom:1rem}
.score{font-size:3rem;font-weight:700} table{border-collapse:collapse;margin:1rem 0}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right} th{background:#f4f5f7}
td:first-child,th:first-child{text-align:left} tr.total td{font-weight:700}
section{border-top:1px solid #ddd;padding-top:.6rem;margin-top:1.4rem}
.badge{display:inline-block;color:#fff;border-radius:4px;padding:0 .45rem;font-size:.8rem;margin-right:.4rem}
.grid{display:flex;flex-wrap:wrap;gap:.5rem} figure{margin:0;width:110px;font-size:.72rem;line-height:1.25}
.group{display:flex;flex-wrap:wrap;gap:.5rem;border:1px solid #ddd;border-radius:6px;padding:.4rem;margin:.4rem 0}
figure img{width:96px;height:96px;display:block;border:1px solid #ddd}
figure.excluded img{opacity:.4;border:2px dashed #c0392b}
figcaption{overflow-wrap:anywhere} .sugg{color:#c0392b} .now{color:#1f618d} .role{font-weight:600}
.more,.note{color:#666;font-size:.85rem}
"""


def _thumb(folder, path: str, digest: str) -> str:
    """An <img> of the image as an inline JPEG, or a grey box when the file cannot be read."""
    try:
        data = thumbnail_path(folder, path, digest, THUMB_PX).read_bytes()
    except Exception:  # noqa: BLE001 - a missing or broken file must not stop the report
        return GREY_BOX
    return f'<img alt="" src="data:image/jpeg;base64,{base64.b64encode(data).decode("ascii")}">'


def checked_as(report: dict, df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Each checked image → (label, split) when it was checked (an older report: as they are now)."""
    now = {r.path: (str(r.label), str(r.split)) for r in df[["path", "label", "split"]].itertuples(index=False)}
    out = {}
    for path, entry in (report.get("images") or {}).items():
        if "label" in entry:
            out[path] = (str(entry["label"]), str(entry.get("split", "")))
        elif path in now:
            out[path] = now[path]
    return out


def change(path: str, was: tuple[str, str] | None, row: dict | None) -> str:
    """What happened to a checked image since the check, in words ('' when nothing did)."""
    if row is None:
        return "deleted since the check"
    if row["excluded"]:
        return "excluded since the check"
    words = []
    if was and str(row["label"]) != was[0]:
        words.append(f"relabelled {row['label']}")
    if was and str(row["split"]) != was[1]:
        words.append(f"moved to {SPLIT_WORDS.get(row['split'], row['split'])}")
    return ", ".join(words) + (" since the check" if words else "")


def summary_of_changes(checked: dict, rows: dict) -> str:
    """'3 images relabelled, 1 excluded, 2 added or restored' since the check ('' when nothing changed)."""
    counts = dict.fromkeys(("relabelled", "moved to another split", "excluded", "deleted"), 0)
    for path, was in checked.items():
        row = rows.get(path)
        if row is None or row["excluded"]:
            counts["deleted" if row is None else "excluded"] += 1
        else:
            counts["relabelled"] += str(row["label"]) != was[0]
            counts["moved to another split"] += str(row["split"]) != was[1]
    counts["added or restored"] = sum(1 for p, r in rows.items() if not r["excluded"] and p not in checked)
    parts = [[n, what] for what, n in counts.items() if n]
    if parts:  # the first number names its noun: '3 images relabelled, 1 excluded'
        parts[0][1] = f"image{'' if parts[0][0] == 1 else 's'} {parts[0][1]}"
    return ", ".join(f"{n} {what}" for n, what in parts)


def _counts_table(checked: dict, kept: pd.DataFrame, stale: bool) -> str:
    """Images checked per class and split, with the total that equals 'N images checked'."""
    frame = pd.DataFrame(list(checked.values()), columns=["label", "split"])
    table = pd.crosstab(frame["label"], frame["split"]) if len(frame) else pd.DataFrame()
    splits = [s for s in workspace.SPLITS if s in table.columns]
    now = kept["label"].astype(str).value_counts()
    labels = sorted(set(table.index) | (set(now.index) if stale else set()))
    head = "".join(f"<th>{SPLIT_WORDS[s]}</th>" for s in splits) + "<th>all checked</th>"
    head += "<th>now</th>" if stale else ""

    def line(label: str, values: list[int], current: int, cls: str = "") -> str:
        cells = "".join(f"<td>{v}</td>" for v in values) + (f"<td>{current}</td>" if stale else "")
        return f'<tr{cls}><td>{escape(label)}</td>{cells}</tr>'

    body = "".join(line(str(k), [int(table.at[k, s]) if k in table.index else 0 for s in splits]
                        + [int(table.loc[k, splits].sum()) if k in table.index else 0], int(now.get(k, 0)))
                   for k in labels)
    total = [int(table[s].sum()) for s in splits] + [len(frame)]
    body += line("all classes", total, len(kept), ' class="total"')
    return f"<table><tr><th>class</th>{head}</tr>{body}</table>"


def _figure(folder, rows: dict, checked: dict, path: str, finding: dict, role: str = "") -> str:
    row = rows.get(path)
    if path not in checked and row is None:  # an unreadable file: a name, no picture
        detail = (finding.get("details") or {}).get("reasons", {}).get(path, "")
        return f"<figure><figcaption>{escape(path)}<br>{escape(str(detail))}</figcaption></figure>"
    label, split = checked.get(path) or (str(row["label"]), str(row["split"]))
    source = str(row["source"]) if row is not None else path  # the file name the user knows
    text = (f'<span title="{escape(source)}">{escape(source.replace(chr(92), "/").rsplit("/", 1)[-1])}</span>'
            f"<br>{escape(label)} · {escape(SPLIT_WORDS.get(split, split))}")
    if role:
        text += f'<br><span class="role">{escape(role)}</span>'
    if path in (finding.get("suggested") or {}):
        text += f'<br><span class="sugg">suggested: {escape(str(finding["suggested"][path]))}</span>'
    now = change(path, checked.get(path), row)
    text += f'<br><span class="now">{escape(now)}</span>' if now else ""
    picture = _thumb(folder, path, row["hash"]) if row is not None else GREY_BOX
    mark = ' class="excluded"' if row is None or bool(row["excluded"]) else ""
    return f"<figure{mark}>{picture}<figcaption>{text}</figcaption></figure>"


def member_role(kind: str, split: str) -> str:
    """Which member of a group of copies this is: the training copy, or the one to act on."""
    if kind != "leakage":
        return ""  # exact, near and conflicting copies: each shows its own label and split
    return "training copy" if split == "train" else "held out: act on this one"


def _images(folder, rows: dict, checked: dict, finding: dict) -> str:
    kind = finding.get("kind")
    if kind in GROUP_KINDS and finding.get("groups"):
        groups = finding["groups"]
        parts = []
        for group in groups[:SHOWN_GROUPS]:
            members = "".join(_figure(folder, rows, checked, p, finding,
                                      member_role(kind, (checked.get(p) or ("", ""))[1]))
                              for p in group)
            parts.append(f'<div class="group">{members}</div>')
        more = len(groups) - min(len(groups), SHOWN_GROUPS)
        return "".join(parts) + (f'<p class="more">… and {more} more groups.</p>' if more > 0 else "")
    figures = "".join(_figure(folder, rows, checked, p, finding) for p in finding["images"][:SHOWN])
    more = len(finding["images"]) - min(len(finding["images"]), SHOWN)
    return f'<div class="grid">{figures}</div>' + (f'<p class="more">… and {more} more.</p>' if more > 0 else "")


def _section(folder, rows: dict, checked: dict, finding: dict) -> str:
    colour = SEVERITY_COLOUR.get(finding["severity"], "#555")
    words = explain(finding)
    return (f'<section><h2><span class="badge" style="background:{colour}">{escape(finding["severity"])}</span>'
            f'{escape(finding["title"])} ({len(finding["images"])})</h2><p>{escape(finding["message"])}</p>'
            + (f'<p class="note">{escape(words)}</p>' if words else "")
            + f"{_images(folder, rows, checked, finding)}</section>")


def _top(name: str, report: dict, now: dict, changed: str) -> tuple[str, str, bool]:
    """The stale banner ('' when current), the version line, and whether the dataset changed since."""
    was = report.get("version") or {}
    stale = (was.get("digest") or report.get("manifest_digest")) != now["digest"]
    date = escape(str(report.get("created", ""))[:19].replace("T", " ")) + " UTC"
    what = f"version {escape(was['label'])}" if was.get("label") else "a version not recorded (an older check)"
    line = f"Describes dataset {what}{', the current one' if not stale else ''} · checked {date}"
    if not stale:
        return "", line, False
    banner = (f'<div class="stale"><strong>This report is out of date.</strong> The dataset has changed since '
              f"the check{': ' + escape(changed) if changed else ''}. The findings below describe {what}, checked "
              f"{date}; the dataset is now at version {escape(now['label'])}. Images are shown with the label "
              "and split they were checked with, marked with what changed since. Check again (Check again on "
              f"the Review page, or <code>python -m imgcls report {escape(name)}</code>) for findings about the "
              "dataset as it is now.</div>")
    return banner, line, True


def render(name: str, report: dict) -> str:
    """The whole report as one HTML page (version, score, class/split counts, each finding with thumbnails)."""
    df = workspace.read_manifest(name)
    folder = workspace.dataset_dir(name)
    rows = {r["path"]: r for r in df.to_dict("records")}
    checked = checked_as(report, df)
    banner, line, stale = _top(name, report, versions.dataset_version(name, df),
                               summary_of_changes(checked, rows))
    findings = report.get("findings", [])
    body = "".join(_section(folder, rows, checked, f) for f in findings) or "<p>No problems found.</p>"
    note = f"<p>{escape(report['message'])}</p>" if report.get("message") else ""
    left_out = int(report.get("excluded") or 0)
    note += (f'<p class="note">{left_out} excluded image{"s were" if left_out != 1 else " was"} left out of the '
             "check.</p>" if left_out else "")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Health of '
            f"{escape(name)}</title><style>{CSS}</style></head><body>{banner}<h1>Dataset health: {escape(name)}</h1>"
            f'<p class="sub">{line} · {int(report.get("images_checked", 0))} images checked · '
            f'{len(findings)} findings</p><div class="score">{int(report.get("score", 0))}/100</div>{note}'
            f"{_counts_table(checked, df[~df['excluded']], stale)}{body}</body></html>")
