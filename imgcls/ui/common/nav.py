"""The app's pages in one place: file, title, icon and what each step is for."""

from __future__ import annotations

from dataclasses import dataclass

# Folder of the page scripts, relative to app.py. Not "pages": Streamlit treats a folder of that name
# next to the entrypoint as the legacy page directory, and on a fresh server whose first request is a
# page URL (e.g. /data) it then runs that page without app.py (no sidebar, no router).
PAGES_DIR = "app_pages"


@dataclass(frozen=True)
class PageInfo:
    """One page of the app; url paths come from the file name (data.py → /data)."""

    file: str
    title: str
    icon: str
    step: str = ""  # one line on what the step does, for the sidebar's step flow

    @property
    def path(self) -> str:
        """Path of the page script relative to app.py, as st.Page and st.switch_page want it."""
        return f"{PAGES_DIR}/{self.file}"


HOME = PageInfo("home.py", "Home", ":material/home:")
DATA = PageInfo("data.py", "Data", ":material/photo_library:", "bring in images, one folder per class")
REVIEW = PageInfo("review.py", "Review", ":material/fact_check:", "fix labels, drop bad images")
AUGMENT = PageInfo("augment.py", "Augment", ":material/auto_fix_high:", "choose image variations")
TRAIN = PageInfo("train.py", "Train", ":material/model_training:", "teach a model")
EVALUATE = PageInfo("evaluate.py", "Evaluate", ":material/insights:", "see what it gets right and wrong")
ADMIN = PageInfo("admin.py", "Admin", ":material/admin_panel_settings:")
CLASS = PageInfo("classroom.py", "Class", ":material/groups:", "join a class, share datasets, the board")
LEARN = PageInfo("learn.py", "Learn", ":material/school:", "see inside the network, run experiments")
STEPS = [DATA, REVIEW, AUGMENT, TRAIN, EVALUATE]
ALL = [HOME, *STEPS, LEARN]
