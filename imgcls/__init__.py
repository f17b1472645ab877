"""imgcls: from a folder of photos to a working, explained image classifier."""

__version__ = "0.1.0"
