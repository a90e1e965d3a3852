"""The domain core: plain Python, no Faust or Kafka import, tested directly."""
