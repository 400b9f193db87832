"""The training machinery that knows no model family and no objective: config checks and
drift, verified checkpoints, metrics, curves, the workdir lock."""
