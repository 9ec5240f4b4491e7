# gcleaner: multi-stage build. libtorch comes from the same PyPI torch wheel the Makefile uses,
# installed into a venv at /opt/venv in both stages (the binary's rpath points there).
ARG TORCH_VERSION=2.13.0

FROM rust:1-bookworm AS build
ARG TORCH_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}"
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH LIBTORCH_USE_PYTORCH=1
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gcleaner && cp target/release/gcleaner /usr/local/bin/gcleaner

FROM debian:bookworm-slim
ARG TORCH_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
COPY --from=build /usr/local/bin/gcleaner /usr/local/bin/gcleaner
RUN useradd --system --create-home --home-dir /var/lib/gcleaner --uid 10001 gcleaner \
    && mkdir -p /var/lib/gcleaner/data && chown gcleaner /var/lib/gcleaner/data
USER gcleaner
WORKDIR /var/lib/gcleaner
ENV GCLEANER_DATA_DIR=/var/lib/gcleaner/data GCLEANER_BIND=0.0.0.0:8080 GCLEANER_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["gcleaner"]
CMD ["serve"]
