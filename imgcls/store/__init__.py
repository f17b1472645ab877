"""The workspace on disk: datasets and their journal, runs, versions, names, limits and who may see what.

No torch here: every page reads through this package, and a page that shows saved results loads no model."""
