# A sample application image for the kind run (images.py): one sample project
# (tests/samples, materialised for an image version) in /app, the working
# directory, on an app base (appbase.Dockerfile). Targets, as imagebuild's flavours:
# root (no USER, like FROM python:3.x-slim) and named-user (USER app).
ARG BASE

FROM ${BASE} AS root
COPY app/ /app/
WORKDIR /app

FROM ${BASE} AS named-user
COPY --chown=app:app app/ /app/
WORKDIR /app
USER app
