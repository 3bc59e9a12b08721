"""Free loopback ports for the servers the tests start."""

from swarmproxy.local_nodes import free_port

__all__ = ["free_port"]
