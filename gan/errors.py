"""User-facing errors: Hydra prints these as one short message, without a traceback."""

from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import CompactHydraException
from omegaconf.errors import InterpolationResolutionError


class UserError(CompactHydraException):
    """A bad config value, a missing dataset, a run folder already taken: something the user
    fixes, so they get one paragraph naming what is wrong and what is allowed."""


@contextmanager
def stopping_hydra() -> Iterator[None]:
    """For Hydra callbacks: Hydra turns an exception raised in a callback into a warning and runs
    the job anyway, so a UserError leaves as SystemExit, which ends the process with its message."""
    try:
        yield
    except UserError as exc:
        raise SystemExit(f"Error: {exc}") from None
    except InterpolationResolutionError as exc:  # a resolver (${unique_dir:...}) refused; OmegaConf keeps only its text
        lead = f"{UserError.__name__} raised while resolving interpolation: "
        if not str(exc).startswith(lead):
            raise
        raise SystemExit(f"Error: {str(exc).splitlines()[0].removeprefix(lead)}") from None
