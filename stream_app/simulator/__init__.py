"""`stream-app simulate`: a discrete-event call center that feeds `call-events` like a real one.

Why: users need events flowing before they wire their PBX, and tests need a feed whose
correct figures are known. The model (config, model, summary) is plain Python with no Kafka
import and no wall clock, deterministic for a seed; only `publish` and `cli` talk to Kafka.
"""
