# swarmproxy: one Docker Engine API in front of many Docker daemons.
#
#   docker build --build-arg VERSION=X.Y.Z --build-arg REVISION="$(git rev-parse HEAD)" \
#       --build-arg SOURCE_URL=https://… -t swarmproxy:X.Y.Z .
#   docker run -d -p 127.0.0.1:2375:2375 \
#       -e SWARMPROXY_NODES=node-1=tcp://10.0.0.3:2375 swarmproxy:X.Y.Z
#
# tests/test_deploy_files.py lints this file with hadolint and replays its RUN, COPY, ENV,
# ENTRYPOINT, CMD and HEALTHCHECK outside Docker (no base image can be pulled in CI): keep
# every step a plain shell command on the absolute paths used here.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY swarmproxy ./swarmproxy
# Wheels of swarmproxy and of every dependency: they all ship binary wheels for CPython 3.11,
# so no compiler is needed, and the install below reads no index.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .
# A venv without pip, copied whole into the runtime stage, so that neither the wheels nor any
# build tool reaches the final image. Both stages run the same base image, so the venv's
# links to its interpreter hold there.
RUN python -m venv --without-pip /opt/swarmproxy \
    && pip --python /opt/swarmproxy/bin/python install --no-cache-dir --no-index \
        --find-links /wheels /wheels/swarmproxy-*.whl

FROM python:3.11-slim
# Only the labels take these. The version itself is written once, in pyproject.toml, and the
# installed package reports it (`swarmproxy --version`); a release build passes it here.
ARG VERSION=dev
ARG REVISION=""
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="swarmproxy" \
      org.opencontainers.image.description="One Docker Engine API in front of many Docker daemons" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}"
# A fixed numeric ID: Kubernetes' runAsNonRoot can only check a number, and mounted
# certificates and keys can be given to it on the host.
RUN groupadd --system --gid 10001 swarmproxy \
    && useradd --system --uid 10001 --gid swarmproxy --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin swarmproxy
COPY --from=build /opt/swarmproxy /opt/swarmproxy
# CMD names a config file so that one mounted there is read, and `serve --config` refuses a
# missing file: the image carries an empty one, for a container configured by SWARMPROXY_*
# variables alone.
COPY deploy/container-config.toml /etc/swarmproxy/config.toml
COPY deploy/healthcheck.py /usr/local/lib/swarmproxy/healthcheck.py
# The listeners are set here rather than in the file, so that a mounted config that leaves
# them out (or says 127.0.0.1, as on a host) is still reachable, and the HEALTHCHECK knows
# where the admin API is. The admin API is privileged: it stays on the container's loopback,
# for the healthcheck and `docker exec … swarmproxy node ls`.
ENV PATH="/opt/swarmproxy/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SWARMPROXY_SERVER_LISTEN=tcp://0.0.0.0:2375 \
    SWARMPROXY_ADMIN_LISTEN=tcp://127.0.0.1:2376
USER 10001:10001
EXPOSE 2375
# The proxy's own verdict (storage answers and a node takes containers), not just a ping, so
# that an orchestrator or load balancer sees a replica that lost its Redis or every node.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-I", "/usr/local/lib/swarmproxy/healthcheck.py"]
ENTRYPOINT ["swarmproxy", "serve"]
CMD ["--config", "/etc/swarmproxy/config.toml"]
