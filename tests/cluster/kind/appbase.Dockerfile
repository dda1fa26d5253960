# An app base for the kind run (images.py): a Python image with a venv that holds
# one stack of kubeharness.imagebuild.STACKS (SQLAlchemy, Alembic, drivers), and a
# user "app" that only the named-user images run as. Like imagebuild's app bases,
# which are built with buildah from Debian's python3 instead.
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}
ARG REQUIREMENTS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# set -f: SQLAlchemy[asyncio] must reach pip as it is, not as a shell glob.
RUN set -f \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ${REQUIREMENTS} \
    && useradd --create-home --shell /bin/sh app
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
