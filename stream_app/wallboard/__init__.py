"""The wallboard: every worker (stream_app.wallboard.pages), or `stream-app wallboard` alone
(stream_app.wallboard.server), reads the live topics whole and serves a page of all queues,
pushed to it as server-sent events."""
