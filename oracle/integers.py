"""What counts as an integer: in text typed by a person, and as a value passed to the API.

int() also reads '1_000', digits of other scripts ('٣') and surrounding whitespace; a block index,
k, seed or budget written so is more likely a slip than a number, so it is refused. A bool is an
int to Python but never a count or an index here."""

import numbers
import re

_INTEGER = re.compile(r"[+-]?[0-9]+")


def integer(text: str) -> int:
    """`text` as an int: ASCII digits with an optional sign, else ValueError (so argparse
    reports an 'invalid integer value')."""
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"not an integer: {text!r}")
    return int(text)


def is_integer(value) -> bool:
    """True for a Python or numpy integer (both numbers.Integral) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
