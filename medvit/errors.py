"""User-facing errors: the CLI prints these as one clear message, without a traceback."""


class UserError(Exception):
    """A problem the user can fix: the message names the file or key and the fix."""
