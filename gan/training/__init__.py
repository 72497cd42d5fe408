"""Build and run one training: the Hydra job, the run top to bottom, the config check, what it prints at its end."""
