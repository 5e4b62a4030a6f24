"""gibbsdream: train discrete generative models and steer how they generate."""

__version__ = "0.1.0"

from .data import ImageCodec, StringCodec  # noqa: E402
from .errors import UsageError  # noqa: E402
from .models import RBM, OrderlessNADE  # noqa: E402
from .sampling import Chain, sample  # noqa: E402

__all__ = ["RBM", "Chain", "ImageCodec", "OrderlessNADE", "StringCodec", "UsageError", "sample", "__version__"]
