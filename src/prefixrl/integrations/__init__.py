"""Adapters to existing RL engines (TRL; verl next). Each imports its engine lazily."""
