"""The one exception type for user errors.

A user error is something the person running the toolkit can fix: a missing or corrupt file, an
image in the wrong format, a shape outside an engine's profile, an empty calibration set. Its
message names the thing and says what was expected. Commands print it without a traceback and exit
non-zero. Bugs stay ordinary exceptions.
"""


class FCNError(Exception):
    """A user error whose message names the offending thing and what was expected."""
