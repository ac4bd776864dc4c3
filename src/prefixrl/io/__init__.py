"""Infrastructure below the algorithm: errors, atomic record stores, checkpoints, experiment trackers.
Nothing here imports the algorithm's modules."""
