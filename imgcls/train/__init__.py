"""Training: TrainConfig, the one executor (`run`), its strategies, loops and checkpoints, and training
runs as background jobs."""
