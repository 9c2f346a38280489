"""usdcarb: research platform for USDC arbitrage.

The generated protobuf modules live in ``gen/python/usdcarb/v1`` (``usdcarb.v1``);
``extend_path`` lets that directory complete this package when both are on sys.path.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
