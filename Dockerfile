# podledger's Airflow image: the official Airflow 3.3 image plus podledger's pinned runtime requirements and podledger
# itself (the same requirements.txt that scripts/bootstrap.sh installs for the demo and the tests).
#   docker compose build        (docker-compose.yaml builds it as podledger-airflow:latest)
FROM apache/airflow:3.3.2-python3.11

USER airflow
COPY --chown=airflow:0 requirements.txt /opt/podledger/requirements.txt
# Pinned exactly: pip must not move Airflow, so the image's own apache-airflow pin is part of the file.
RUN pip install --no-cache-dir -r /opt/podledger/requirements.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/podledger/
COPY --chown=airflow:0 include /opt/podledger/include
COPY --chown=airflow:0 dags /opt/podledger/dags
COPY --chown=airflow:0 plugins /opt/podledger/plugins
# Editable: the library finds its SQL and sample config beside it, under /opt/podledger/include.
RUN pip install --no-cache-dir --no-deps -e /opt/podledger \
 && python -m compileall -q /opt/podledger/include /opt/podledger/dags /opt/podledger/plugins
# (pip compiled the requirements; the editable source is compiled here, as PYTHONDONTWRITEBYTECODE below stops
# every task process from caching its own compilation)

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/podledger/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/podledger/plugins \
    PODLEDGER_CONFIG=/opt/podledger/include/cost_centers.yaml \
    PYTHONPATH=/opt/podledger/plugins \
    PYTHONDONTWRITEBYTECODE=1
