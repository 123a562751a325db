"""What every experiment shares: pipeline stages, method keys, the run directory, timing."""
