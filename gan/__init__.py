"""gan: a config-driven GAN experiment runner (PyTorch Lightning + Hydra)."""
