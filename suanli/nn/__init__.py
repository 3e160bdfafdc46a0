"""Neural-network building blocks. ``suanli.nn.functional`` holds the functional ops."""
from . import functional

__all__ = ["functional"]
