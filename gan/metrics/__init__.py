"""Offline GAN metrics on a classifier the project trains itself (issue: metrics you can trust)."""
