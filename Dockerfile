# Tickerbell in a container: non-root, the data directory (/data: database, optional .env) a
# volume, /healthz checked. No compiler needed: every dependency installs from a wheel.
#   docker build -t tickerbell .
#   docker run -d --name tickerbell --env-file .env -v tickerbell-data:/data tickerbell
# or `docker compose up -d` with compose.yaml.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /venv
COPY requirements.lock /src/
RUN /venv/bin/pip install --require-hashes -r /src/requirements.lock
COPY pyproject.toml README.md LICENSE /src/
COPY alerts /src/alerts
COPY bot /src/bot
COPY feeds /src/feeds
COPY storage /src/storage
COPY tickerbell /src/tickerbell
RUN /venv/bin/pip install --no-deps /src

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 tickerbell \
    && install -d -m 700 -o tickerbell -g tickerbell /data
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TICKERBELL_HOME=/data \
    TICKERBELL_METRICS_HOST=0.0.0.0 \
    TICKERBELL_METRICS_PORT=8080 \
    MPLCONFIGDIR=/tmp/matplotlib
USER tickerbell
WORKDIR /data
VOLUME /data
EXPOSE 8080
# 503 until some feed has a fresh good price (so: until the bot has a rule) or while a chat
# platform is not receiving commands.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tickerbell"]
CMD ["run"]
