"""The one error type the project raises for bad input; the CLI turns it into exit code 2."""


class SynthflawError(Exception):
    """Bad user input (file, config, field, line): the message is one line a person can act on."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
