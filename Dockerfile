# The worker image: `stream-app` (worker, simulate, replay, …) on Python 3.12.
#   docker build -t callcenter-metrics .
#   docker run --rm -e KAFKA_BOOTSTRAP=kafka:9092 callcenter-metrics            # a worker
#   docker run --rm -e KAFKA_BOOTSTRAP=kafka:9092 callcenter-metrics simulate --speed 1
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (a layer that survives code edits), then the project itself.
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
RUN pip install .

# Data the code reads at run time, outside the installed package.
COPY topics ./topics
COPY sla.example.yaml ./

RUN useradd --system --create-home --uid 10001 --user-group app \
    && mkdir -p /var/lib/stream-app \
    && chown app:app /var/lib/stream-app

ENV TOPIC_CATALOG=/app/topics/catalog.yaml \
    DATA_DIR=/var/lib/stream-app \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=6066

USER app
EXPOSE 6066
ENTRYPOINT ["stream-app"]
CMD ["worker"]
