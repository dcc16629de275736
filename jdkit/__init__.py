"""jdkit: an asyncio-native Python SDK for the Chainlink Job Distributor gRPC API."""

from jdkit._exceptions import *  # noqa: F403
from jdkit._exceptions import __doc__ as _exc_doc  # noqa: F401

__version__ = "0.1.0"
