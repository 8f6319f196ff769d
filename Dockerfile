# ecompipe with Airflow: the image docker-compose.yml runs. The versions are those of uv.lock.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/ecompipe/.venv \
    PATH=/opt/ecompipe/.venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow

RUN pip install --no-cache-dir uv \
    && useradd --create-home --uid 50000 airflow \
    && mkdir -p /opt/ecompipe /opt/airflow && chown airflow /opt/ecompipe /opt/airflow

WORKDIR /opt/ecompipe
USER airflow
COPY --chown=airflow pyproject.toml uv.lock README.md ./
COPY --chown=airflow lib lib
RUN uv sync --locked --extra airflow --no-dev --compile-bytecode \
    && python -c "from ecompipe.runner import ensure_kernel; ensure_kernel()"
COPY --chown=airflow notebooks notebooks
COPY --chown=airflow sql sql
COPY --chown=airflow expectations expectations
COPY --chown=airflow dags dags
