"""Adapters that turn recorded call-center data into contract events, for replays and tests."""
