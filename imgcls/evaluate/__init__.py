"""A trained run at work: metrics, predictions on new images, the unfamiliar-image check, two runs
compared, and exports that work outside the app."""
