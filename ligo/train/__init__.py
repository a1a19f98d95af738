"""Training loop and its parts: objective, optimizer and schedules, checkpoints, FLOPs, logs."""
