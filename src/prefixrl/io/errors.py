"""The project's one error type for bad user input."""


class BadInput(ValueError):
    """Bad user input: the CLI prints the message on one line and exits with code 2."""
