"""Bringing images in: ZIPs, folders, uploads, CSV labels and samples, read safely and split."""
