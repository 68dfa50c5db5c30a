# ringd, the ringkv cluster node. See docker-compose.yml for a three-node cluster.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY ring ./ring
COPY feeds ./feeds
COPY search ./search
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
ENV RINGKV_DATA=/data \
    RINGKV_LISTEN=0.0.0.0:7070 \
    PYTHONUNBUFFERED=1
VOLUME /data
# TCP (clients and replication) and UDP (gossip) on the same port number.
EXPOSE 7070/tcp 7070/udp
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["ringctl", "--nodes", "127.0.0.1:7070", "status", "--check"]
ENTRYPOINT ["ringd"]
