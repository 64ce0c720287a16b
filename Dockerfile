# One image for the API, the worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN useradd --create-home --uid 10001 mecc

COPY pyproject.toml README.md ./
COPY mecc ./mecc
COPY config ./config
RUN pip install .

USER mecc
ENV MECC_VAR_DIR=/app/var MECC_CONFIG_DIR=/app/config
EXPOSE 8000
CMD ["gunicorn", "--config", "python:mecc.platform.gunicorn_conf", "--bind", "0.0.0.0:8000", "mecc.api:create_app()"]
