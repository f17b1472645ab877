"""Backbones and what is computed from pixels: one Preprocess per backbone, the decoded-image and feature
caches, thumbnails, Grad-CAM and the network's inside views."""
