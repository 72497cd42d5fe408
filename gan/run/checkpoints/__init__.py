"""A run's checkpoints, in one place.

- What one holds: Lightning's state (weights, optimizers, loops, callbacks' states) and the
  run's config as written and resolved (`saving.CheckpointContents`). No RNG state: every draw
  comes from (seed, iteration) (gan/engine/draws.py, gan/data/batches.py).
- When they are written: `gan.engine.lightning_adapter.Checkpoint` (Lightning's ModelCheckpoint
  with four fixes: step_NNNNNN.ckpt, last.ckpt, best_fid.ckpt; never with non-finite weights),
  and `saving.ExceptionCheckpoint` (on_exception.ckpt at a crash or a second Ctrl-C).
- Finding and reading one, as data only, and rebuilding its generator: `files`.
- What a resume may change, and a requeued SLURM job continuing its own run: `resume`.
"""
