"""Problems and what is made of them: tasks and their verifiers, prompts, rejection sampling, the trace
and prefix stores, and sampled evaluation."""
