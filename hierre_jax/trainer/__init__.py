"""The training machinery that knows no model family and no objective: the loop (train
state, optimizer, resume, step / check / log / checkpoint / evaluate), config checks and
drift, verified checkpoints, metrics, curves, the workdir lock."""
