"""Review page, images: the filters, undo/redo and the gallery (or one image at a time), drawn as a fragment
so that ticking, filtering and paging redraw only this part of the page."""

from __future__ import annotations

import streamlit as st

from imgcls.ui.review import gallery as review_gallery, reviewing, single as review_single


@st.fragment
def show_images(name: str, report: dict | None) -> None:
    """Filters, the view and Undo/Redo, then a page of thumbnails with the bulk edits (or one big image)."""
    reviewing.rerun_page_if_edited()  # an edit changes counts and warnings elsewhere on the page too
    filters = reviewing.filter_controls(name, report)
    rows = reviewing.filtered_rows(name, report, filters)
    suggested = reviewing.suggestions(report)
    mode = reviewing.toolbar_controls(name)
    reviewing.show_notice()
    if mode == "one":
        review_single.show_one(name, rows, suggested, report)
        return
    chunk = review_gallery.page_rows(name, rows)
    review_gallery.bulk_controls(name, rows, chunk)
    review_gallery.show_gallery(name, chunk, suggested)
    review_gallery.show_pages(name, rows, chunk)
