"""The layer classes of :mod:`suanli.nn` (one file per family)."""
from .activation import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .container import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403
from . import activation, attention, container, conv, dropout, linear, loss, norm, pooling, sparse

__all__ = [name for mod in (activation, attention, container, conv, dropout, linear, loss, norm, pooling,
                            sparse)
           for name in mod.__all__]
