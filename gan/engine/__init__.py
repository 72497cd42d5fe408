"""How iterations execute: chunks of iterations per Lightning step, CUDA graphs, several processes, Lightning's internals."""
