# runcast gateway: `docker build -t runcast . && docker run -p 8080:8080 runcast`
# Without RUNCAST_UPSTREAM_URL it serves the embedded simulator (open subscribe mode).
# Set the port with RUNCAST_PORT (not --port): the HEALTHCHECK reads the same variable.
# Stop grace: SIGTERM starts a 20 s drain, then at most 10 s (shutdown_timeout) to end every
# stream: 30 s in all, Kubernetes' default terminationGracePeriodSeconds (compose: 30 s too).
FROM python:3.11-slim

# docker build --build-arg REVISION="$(git rev-parse HEAD)" --build-arg SOURCE=<repository URL> .
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="runcast" \
      org.opencontainers.image.description="Gateway for OpenAI-style run streams: proxy, fan-out, resume, tool automation" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/runcast \
    PATH=/opt/runcast/bin:$PATH \
    RUNCAST_HOST=0.0.0.0 \
    RUNCAST_PORT=8080 \
    RUNCAST_DRAIN_TIMEOUT=20

WORKDIR /app

# Dependency layer: rebuilt only when pyproject.toml changes, not on every source change.
COPY pyproject.toml ./
RUN python -m venv "$VIRTUAL_ENV" \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Source layer: the package itself, without dependencies (installed above).
COPY README.md ./
COPY parsers ./parsers
COPY gateway ./gateway
RUN pip install --no-deps . \
    && rm -rf /app/build /app/*.egg-info

USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RUNCAST_PORT', '8080') + '/healthz', timeout=2)"]
ENTRYPOINT ["runcast"]
CMD ["serve"]
