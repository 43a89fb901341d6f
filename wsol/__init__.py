"""wsol: a benchmark suite for weakly supervised object localization."""

from wsol.config import register_resolvers

register_resolvers()

__version__ = "0.1.0"
