"""Types with ranges for constructor parameters. The constructors' signatures are the one
source of what a config value may be: gan/training/schema.py derives its checks from them."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

PosInt = Annotated[int, Field(strict=True, gt=0)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]  # a probability, a momentum
OpenFraction = Annotated[float, Field(gt=0, lt=1)]  # a decay strictly between 0 and 1
Beta = Annotated[float, Field(ge=0, lt=1)]  # Adam's beta_1, beta_2
Label = Annotated[float, Field(gt=0, le=1)]  # a target label; below 1 is label smoothing
Count = Annotated[int, Field(strict=True, ge=2)]  # classes, or samples a score needs
Widths = Annotated[list[PosInt], Field(min_length=1)]  # hidden layer widths, at least one
