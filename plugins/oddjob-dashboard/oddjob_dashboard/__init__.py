"""oddjob-dashboard: see and fix jobs in a browser; ``create_app`` mounts it in any ASGI app."""

from .app import create_app
from .options import DashboardOptions
from .security import Credentials

__all__ = ["Credentials", "DashboardOptions", "create_app"]
