"""Demo links: a run's predict view behind a revocable token, and the server that shows only that."""
