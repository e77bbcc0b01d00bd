# HAProxy from Debian, the L4 (TCP) balancer in front of the frontdoor
# replicas of docker/fleet.compose.yaml. Build context: docker/fleet.
#
#   podman build --format docker --network host -f docker/fleet/haproxy.Dockerfile \
#     -t localhost/frontdoor-haproxy:2.6 docker/fleet
#
# Mount the configuration at /etc/haproxy/haproxy.cfg (docker/fleet/haproxy.cfg
# is the example, also shipped in the image). Runs as the Debian user haproxy,
# in the foreground (-db), as master-worker (-W: SIGUSR2 reloads).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN export DEBIAN_FRONTEND=noninteractive \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends haproxy \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log

COPY haproxy.cfg /etc/haproxy/haproxy.cfg
RUN haproxy -v | head -n 1
USER haproxy
EXPOSE 8080
STOPSIGNAL SIGUSR1
ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
