from advprune.extrapolation import ImportanceExtrapolator

__all__ = ["ImportanceExtrapolator"]
__version__ = "0.0.0"
