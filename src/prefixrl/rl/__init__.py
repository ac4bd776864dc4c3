"""The RL algorithm: the trainer's settings, the methods, the trained-token mask, the losses, the pool of
prefixed and plain problems, SFT, exact evaluation, and the export of the pool to other trainers."""
