"""Training the embedded model: recipes, resumable checkpoints, logs and one module per stage."""
