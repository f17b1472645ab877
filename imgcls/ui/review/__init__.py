"""The Review page: the health check, findings, the gallery, single-image edits and exports."""
