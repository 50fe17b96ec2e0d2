"""The domains of numeric command-line values, one place for every entry point.

Each domain is an argparse type: it parses the text, rejects NaN, inf and values outside the
domain with argparse.ArgumentTypeError (argparse then names the flag and exits 2) and returns
the value. `Domain.problem(value)` applies the same rule to a value already parsed (a config
field read from Python or a checkpoint), so a configuration object checks with the same words.
"""
import argparse
import math
import numbers


class Domain:
    """An argparse type for numbers of `kind` (int or float) for which ok(value) holds.

    words: what the value must be, for argparse ("a positive integer"); rule: the same as a
    condition, for a configuration field ("--x must be >= 1").
    """

    def __init__(self, kind, ok, words, rule):
        self.kind, self.ok, self.words, self.rule = kind, ok, words, rule
        self.__name__ = words   # argparse's fallback message names the type by it

    def _valid(self, value):
        return (self.kind is int or _finite(value)) and self.ok(value)

    def __call__(self, text):
        try:
            value = self.kind(text.strip())
        except (TypeError, ValueError, OverflowError):
            value = None
        if value is None or not self._valid(value):
            raise argparse.ArgumentTypeError(f"expected {self.words}, got {text!r}")
        return value

    def problem(self, value):
        """None when value is in the domain, else why not ("must be >= 1, got 0")."""
        wanted = numbers.Integral if self.kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, wanted):
            return f"must be {self.words}, got {_show(value)}"
        if not self._valid(value):
            if self.kind is float and not _finite(value):
                return f"must be finite, got {_show(value)}"
            return f"must be {self.rule}, got {_show(value)}"
        return None


def _finite(value):
    try:
        return math.isfinite(value)
    except OverflowError:   # an int beyond the float range
        return False


def _show(value, width=40):
    # NumPy scalars as plain numbers (not np.int64(2)); a huge value cut short
    if isinstance(value, bool):
        pass
    elif isinstance(value, numbers.Integral):
        value = int(value)
    elif isinstance(value, numbers.Real):
        value = float(value)
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def int_at_least(lowest):
    """Integers >= lowest."""
    words = {0: "a non-negative integer", 1: "a positive integer"}.get(lowest, f"an integer >= {lowest}")
    return Domain(int, lambda v: v >= lowest, words, f">= {lowest}")


non_negative_int = int_at_least(0)
positive_int = int_at_least(1)
finite_float = Domain(float, lambda v: True, "a finite number", "finite")
non_negative_float = Domain(float, lambda v: v >= 0, "a non-negative number", ">= 0")
positive_float = Domain(float, lambda v: v > 0, "a positive number", "> 0")
fraction = Domain(float, lambda v: 0 <= v < 1, "a number in [0, 1)", "in [0, 1)")


def int_list(text):
    """'1,20,500' -> (1, 20, 500): comma-separated positive integers."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers")
    return tuple(positive_int(s) for s in items)
