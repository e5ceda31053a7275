# runcast gateway: `docker build -t runcast . && docker run -p 8080:8080 runcast`
# Without RUNCAST_UPSTREAM_URL it serves the embedded simulator (open subscribe mode).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY parsers ./parsers
COPY gateway ./gateway
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin runcast

USER runcast
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["runcast", "serve", "--host", "0.0.0.0"]
