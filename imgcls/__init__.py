"""imgcls: from a folder of photos to a working, explained image classifier."""

import os

# albumentations asks PyPI for a newer version on every import (up to 2 s when offline or firewalled, in the
# server and in every training process); imgcls works offline and sends nothing out.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
