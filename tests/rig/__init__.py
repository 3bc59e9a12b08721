"""Real processes (dockerd, redis-server) that the tests start and stop for real."""
