"""swarmproxy's benchmark suite: the proxy against a node reached directly, on one machine.

Run it with ``python -m bench`` (``--quick`` for a smoke run); see bench/__main__.py.
"""
