"""Augmentation: pipelines as data, the offered transforms, seeded previews, and whether a transform
can change the class."""
