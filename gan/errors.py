"""User-facing errors: Hydra prints these as one short message, without a traceback."""

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """A bad config value, a missing dataset, a run folder already taken: something the user
    fixes, so they get one paragraph naming what is wrong and what is allowed."""
