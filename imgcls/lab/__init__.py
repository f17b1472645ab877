"""The Learn page's experiments: quick ones on cached features, thorough ones with real training runs."""
