"""Project exceptions. Everything `core` raises on purpose derives from `AtcError`, so the CLI and
the pages can show the message as it is: each one says what was expected and what was found."""


class AtcError(Exception):
    """Base class of errors meant for the user (shown without a traceback)."""


class ConfigError(AtcError):
    """A config key is unknown, or its value has the wrong type or is out of range."""


class DataError(AtcError):
    """Input data cannot be used: names the file, and where it can the column and row."""


class TrainingError(AtcError):
    """Training cannot go on (e.g. a non-finite loss)."""


class StopRequested(AtcError):
    """The user asked the run to stop (SIGTERM); raised at a safe point after a checkpoint."""


class JobError(AtcError):
    """A job cannot be started or controlled (another job runs, the run folder is missing...)."""


class ValidationFailed(AtcError):
    """`validate_outputs` found a problem with the run's outputs."""
