"""One Falcon resource per endpoint."""
