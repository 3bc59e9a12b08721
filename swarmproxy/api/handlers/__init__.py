"""Handlers, one module per resource as docker-py lays out its API."""
