"""oddjob execution backend 'asyncio': async jobs run concurrently on one event loop."""

from .executor import AsyncioExecutor, AsyncioOptions

__all__ = ["AsyncioExecutor", "AsyncioOptions"]
