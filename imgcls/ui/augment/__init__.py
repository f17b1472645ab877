"""The Augment page: the pipeline editor, previews and the label-safety measurement."""
