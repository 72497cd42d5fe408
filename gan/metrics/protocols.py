"""Evaluation protocols: one name that fixes everything a reported number depends on.

A name reads `<family><count>_<reference>`:

- family: `fid` (Inception-v3 of the TF FID, images resized to 299 the way torch-fidelity and the
  TF code do: `legacy`), `clean_fid` (the same network after clean-fid's anti-aliased bicubic
  resize: `clean`), `classifier` (the project's own classifier of the data set, at the images'
  own size: works offline);
- count: generated samples, `10k`, `50k` or digits (`2000`);
- reference: `test` (the held-out split) or `train` (every training image, as stylegan2-ada's
  `fid50k_full` and StudioGAN's `-ref train`).

So `fid50k_train` is the number papers quote, `fid10k_test` its fast cousin, and
`classifier10k_test` (the default during training: what a CPU run affords) the project's own.
The name is written beside every score (console, JSON, TensorBoard tag, status.json)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Annotated

from pydantic import AfterValidator

from gan.errors import UserError

FAMILIES = {  # family: (feature network, resize mode)
    "fid": ("inception", "legacy"),
    "clean_fid": ("inception", "clean"),
    "classifier": ("classifier", "none"),
}
REFERENCES = ("test", "train")
PATTERN = re.compile(r"^(?P<family>clean_fid|fid|classifier)(?P<count>\d+k?)_(?P<reference>\w+)$")
DEFAULT = "classifier10k_test"
GRAMMAR = ("a protocol reads <family><count>_<reference>: family fid (Inception-v3, legacy resize), clean_fid "
           "(Inception-v3, clean-fid's resize) or classifier (the project's own, offline); count 10k, 50k or a number; "
           "reference test (the held-out images) or train (every training image). For example fid50k_train (what "
           f"papers quote), fid10k_test, {DEFAULT} (the default)")


@dataclass(frozen=True)
class Protocol:
    family: str
    n: int
    reference: str

    @property
    def features(self) -> str:
        return FAMILIES[self.family][0]

    @property
    def resize(self) -> str:
        return FAMILIES[self.family][1]

    @property
    def name(self) -> str:
        count = f"{self.n // 1000}k" if self.n % 1000 == 0 else str(self.n)
        return f"{self.family}{count}_{self.reference}"

    def describe(self) -> str:
        """`fid50k_train (50000 samples against every training image; Inception-v3, legacy resize)`."""
        against = "the held-out images" if self.reference == "test" else "every training image"
        network = "the project's classifier" if self.features == "classifier" else f"Inception-v3, {self.resize} resize"
        return f"{self.name} ({self.n} samples against {against}; {network})"


def parse(name: str, n: int | None = None, key: str = "protocol") -> Protocol:
    """The protocol a name stands for; `n`, when given, replaces its sample count (and so its name:
    `fid10k_test` with n=2000 reports as `fid2k_test`)."""
    match = PATTERN.match(str(name))
    if match is None or match["reference"] not in REFERENCES:
        raise UserError(f"{key}={name} is not an evaluation protocol: {GRAMMAR}.")
    count = match["count"]
    protocol = Protocol(match["family"], int(count[:-1]) * 1000 if count.endswith("k") else int(count), match["reference"])
    if n is not None:
        protocol = replace(protocol, n=n)
    if protocol.n < 2:
        raise UserError(f"{key}={name}: the scores need at least 2 samples, the protocol names {protocol.n}.")
    return protocol


def check_name(name: str) -> str:
    """A protocol name, for a signature's type (the config check names the key)."""
    if PATTERN.match(str(name)) is None or PATTERN.match(str(name))["reference"] not in REFERENCES:
        raise ValueError(f"not an evaluation protocol: {GRAMMAR}")
    return name


ProtocolName = Annotated[str, AfterValidator(check_name)]
