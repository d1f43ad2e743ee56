"""Real processes for the tests: gunicorn gateways, redis-server, the emulator."""
