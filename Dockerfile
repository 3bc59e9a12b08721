# swarmproxy: one Docker Engine API in front of many Docker daemons.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY swarmproxy ./swarmproxy
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="swarmproxy" \
      org.opencontainers.image.description="One Docker Engine API in front of many Docker daemons" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home swarmproxy
USER swarmproxy
EXPOSE 2375
# Nodes and storage come from a mounted config or SWARMPROXY_* variables.
ENV SWARMPROXY_SERVER_LISTEN=tcp://0.0.0.0:2375
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:2375/_ping').status != 200)"
ENTRYPOINT ["swarmproxy", "serve"]
CMD ["--config", "/etc/swarmproxy/config.toml"]
