"""The one error type users see: a message that names the problem and the fix."""


class NodepruneError(Exception):
    """A problem with the user's input or environment, explained in one line."""
