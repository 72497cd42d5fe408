"""How a run lives and ends: its folder, status, signals, processes, threads, checkpoints, resume, and what it prints."""
