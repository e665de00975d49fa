"""Argument types shared by the command-line scripts, so every script refuses bad numbers the same way."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a bad argument is one line (argparse prints the whole usage block first)."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parse(text: str, convert: Callable[[str], Number], requirement: str) -> Number:
    """`convert(text)`, or argparse's one-line error saying what the option needs."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _parse(text, int, "a positive integer")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _parse(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _parse(text, float, "a finite number > 0")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _parse(text, float, "a number >= 0")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A share of the data in [0, 1)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def share(text: str) -> float:
    """A share in [0, 1], both ends included (a scale from none to all)."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def at_most(parse: Callable[[str], Number], limit: Number) -> Callable[[str], Number]:
    """`parse`, refusing values above `limit`: huge numbers would fail late and obscurely (an overflow in
    TensorFlow's step arithmetic, a sleep the OS refuses, a million threads)."""

    def bounded(text: str) -> Number:
        value = parse(text)
        if value > limit:
            shown = f"{limit:,}" if isinstance(limit, int) else f"{limit:g}"
            raise argparse.ArgumentTypeError(f"must be at most {shown}, got {text}")
        return value

    return bounded
