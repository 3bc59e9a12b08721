"""swarmproxy: one Docker Engine API in front of many Docker daemons."""

__version__ = "0.1.0"
