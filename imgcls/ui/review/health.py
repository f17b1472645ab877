"""Review page, health check: the score, the findings ranked by severity, and what each one means."""

from __future__ import annotations

from functools import partial

import streamlit as st

from imgcls import jobs
from imgcls.health import check as health, job as healthjob
from imgcls.store import manifestquery, workspace
from imgcls.ui.common.jobview import JobView, show_job, start_job
from imgcls.ui.common.text import plain
from imgcls.ui.review.groups import is_open, open_groups, show_groups
from imgcls.ui.review.reviewing import images_count, kind_title, show_finding_images, when

SEVERITY = {"high": (0, ":material/error:", "red"), "medium": (1, ":material/warning:", "orange"),
            "low": (2, ":material/info:", "blue")}

# Why each finding matters, for someone who has never trained a model (the finding's message says what to do).
EXPLAIN = {
    "unreadable": "Files that cannot be opened are not in the dataset, so their pictures teach "
                  "nothing. Re-save them as JPEG or PNG and import them again if they count.",
    "exact_duplicate": "A picture that appears twice counts twice, and the model learns it by "
                       "heart. Keep one copy, exclude the others.",
    "near_duplicate": "Resized or re-saved copies count twice, just like exact ones. Keep one "
                      "unless they really differ.",
    "leakage": "The model is tested on pictures it has already seen, so its scores look better "
               "than they will be on new images. Exclude the copy, or move it to the same split.",
    "conflicting_labels": "The same picture tells the model two different answers. Keep the "
                          "right label; relabel or exclude the others.",
    "class_imbalance": "With few examples of a class, the model learns to guess the big "
                       "classes. Add images to the small ones if you can.",
    "tiny_image": "The model enlarges small images and sees mostly blur. Exclude those you "
                  "cannot make out yourself.",
    "huge_image": "Only speed; very large files are shrunk anyway, so nothing is lost.",
    "odd_shape": "The model sees a square, so most of a very long or tall image is cut away. "
                 "Check the subject is still visible.",
    "grayscale": "If one class is mostly grey, the model may learn 'grey' instead of the object. "
                 "Fine if your real images can be grey too.",
    "dark": "The model cannot learn from what it cannot see. Exclude the ones without a visible "
            "subject.",
    "bright": "Washed-out images hide the subject. Exclude the ones without a visible subject.",
    "low_contrast": "A flat image hides the subject. Exclude the ones without a visible subject.",
    "blurry": "Blur hides details. Keep some if real photos will be blurry too; exclude "
              "unusable ones.",
    "outlier": "An off-topic or misfiled picture teaches the wrong thing. Have a look at each.",
    "label_error": "A wrong label teaches the model the wrong answer. The class a quick model sees instead "
                   "is shown as 'maybe …' under each image.",
}
CHECKS = ("unreadable files, exact and near duplicates, the same image in training and test (leakage), "
          "copies with different labels, too few images in a class, tiny, huge, dark, bright, flat or "
          "blurry images, odd ones out, and images that are probably labelled wrong")


def score_word(score: float) -> str:
    """good / fair / poor for a health score out of 100."""
    return "good" if score >= 80 else "fair" if score >= 50 else "poor"


@st.cache_resource(max_entries=8, show_spinner=False)
def _saved_report(name: str, folder: str, mtime_ns: int, size: int) -> dict | None:
    # the folder (absolute, so it names the workspace too) and the file's stamp only key the cache: a new check
    # changes them. The same dict is handed to every rerun, not a copy (at 100,000 images copying it took
    # longer than drawing the page): nothing changes it.
    return health.load(name)


def load_report(name: str) -> dict | None:
    """The dataset's last health report, read from disk only when health.json has changed."""
    path = workspace.dataset_dir(name) / "health.json"
    try:
        stat = path.stat()
    except OSError:  # never checked: nothing to keep
        return health.load(name)
    return _saved_report(name, str(path.parent), stat.st_mtime_ns, stat.st_size)


def _start_check(name: str) -> None:
    """Start the check in the background and draw the page again, now with its progress."""
    if start_job(healthjob.start, name, failed="The check could not start"):
        st.rerun()


def show_live(name: str) -> None:
    """The queued or running check: its place in line or progress, with Stop; the page is drawn again when it
    ends."""
    show_job(JobView(stop_key="review.check.stop", status=partial(healthjob.job_status, name),
                     stop=partial(healthjob.stop_job, name), stop_label="Stop the check", device="CPU",
                     caption="The check runs in the background: you can keep reviewing, or visit other pages "
                             "and come back."))


def _show_job_outcome(status: dict) -> None:
    """What went wrong in the last background check, if it failed or its process vanished."""
    if status.get("state") in ("failed", "interrupted"):
        st.error(plain(status.get("message") or "The check could not finish."), icon=":material/error:")


def health_controls(name: str) -> dict | None:
    """The last health report with its score, or the call to run the first check; None if never checked.

    The check runs as a background process (`healthjob.start`); while it runs, a live progress bar shows here,
    also after a browser refresh or a visit to another page."""
    report = load_report(name)
    status = healthjob.job_status(name)
    running = status.get("state") in jobs.ACTIVE
    if report is None:
        st.markdown(f"**Not checked yet.** The check looks for {CHECKS}. It takes a few seconds to a few "
                    "minutes, by the number of images, and changes nothing: you decide what to fix.")
        if running:
            show_live(name)
            return None
        _show_job_outcome(status)
        if st.button("Check my dataset", key="review.check", type="primary", icon=":material/health_and_safety:"):
            _start_check(name)
        return None
    row = st.container(horizontal=True, vertical_alignment="center", gap="large")
    scores = row.container(horizontal=True, gap="large", width="content")  # drawn first, filled below
    again = row.button("Check again", key="review.check", icon=":material/refresh:", disabled=running,
                       help="Run every check anew, after your edits for example.")
    if again:
        _start_check(name)
    show_score(report, scores)
    if running:
        show_live(name)
        return report
    _show_job_outcome(status)
    if health.is_stale(name, report):
        st.warning("You have edited the dataset since this check: press **Check again** to update the findings.",
                   icon=":material/update:")
    return report


def show_score(report: dict, row) -> None:
    """The health score with a plain word, how many images were checked, and when."""
    score = float(report.get("score", 0))
    word = score_word(score)
    row.metric("Health score", f"{score:.0f}/100", delta=word, delta_arrow="off", width="content",
               delta_color={"good": "green", "fair": "orange"}.get(word, "red"),
               help="100 means no problem found; each finding takes points off by how many images it "
                    "touches and how serious it is.")
    row.metric("Images checked", f"{report.get('images_checked', 0):,}", width="content")
    st.caption(f"Checked {plain(when(report.get('created')))} in {report.get('seconds', 0):.1f} s.")
    if report.get("message"):
        st.info(plain(report["message"]))


def ranked(findings: list[dict]) -> list[dict]:
    """Findings, most severe first, then those touching the most images."""
    return sorted(findings, key=lambda f: (SEVERITY.get(f.get("severity"), (3,))[0], -len(f.get("images") or [])))


def _show_finding(name: str, finding: dict, known: set, i: int) -> None:
    kind, severity = finding.get("kind", ""), finding.get("severity", "low")
    _, icon, colour = SEVERITY.get(severity, SEVERITY["low"])
    images = finding.get("images") or []
    count = f" · {images_count(len(images))}" if images else ""
    st.markdown(f"{icon} **{plain(finding.get('title', kind_title(kind)))}** :{colour}-badge[{plain(severity)}]"
                f"{count}  \n{plain(finding.get('message', ''))}")
    why = "Why it matters: " + EXPLAIN[kind][0].lower() + EXPLAIN[kind][1:] if kind in EXPLAIN else ""
    st.caption(" ".join(part for part in (why, plain(health.explain(finding))) if part))
    shown = [p for p in images if p in known]
    row = st.container(horizontal=True)
    if shown and kind in health.GROUP_KINDS and finding.get("groups") and not is_open(name, kind):
        row.button("Compare the copies side by side", type="tertiary", key=f"review.finding.{i}.groups",
                   icon=":material/compare:", on_click=open_groups, args=(name, kind),
                   help="Every copy of each picture next to the others, training copies included, with its "
                        "label and split and the edits that settle it.")
    if shown:
        row.button(f"Show {'it' if len(shown) == 1 else f'these {len(shown):,}'} below", type="tertiary",
                   key=f"review.finding.{i}", icon=":material/filter_alt:", on_click=show_finding_images,
                   args=(name, kind), help="Show only these images below, most suspicious first.")
    elif images:  # unreadable files never made it into the manifest: name them instead
        st.caption("Files: " + ", ".join(plain(str(p)) for p in images[:5]) + (" …" if len(images) > 5 else ""))


def show_findings(name: str, report: dict) -> None:
    """The findings, most severe first, each with what it means and a button that shows its images."""
    findings = ranked(report.get("findings") or [])
    if not findings:
        st.success("No problems found. Have a quick look through the images anyway: no check replaces your eyes.")
        return
    known = manifestquery.has_paths(name, {p for f in findings for p in f.get("images") or []})
    with st.container(border=True):
        for i, finding in enumerate(findings):
            _show_finding(name, finding, known, i)
            if is_open(name, finding.get("kind", "")):
                show_groups(name, finding)  # right under the finding that opened them
