"""Dataset health: every check (label errors, copies, leaks, poor images), its score, its job, its report."""
