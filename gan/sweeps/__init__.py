"""How sweeps search: Optuna studies that continue, and pruning a trial from inside its job."""
