"""The theory lab (paper §3.1, App. D): exact small MDPs where the paper's statements can be checked."""
