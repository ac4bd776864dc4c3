"""The embedded base model: its config, character tokenizer, pretraining on the chain task, and the
calibration that puts it in the paper's regime before any method runs."""
