# The gateway's image: built in a Rust image, run from a slim Debian as an unprivileged user.
#   docker build -t mcp-gateway .
#   docker run -p 8080:8080 -v mgw-data:/var/lib/mcp-gateway mcp-gateway   (the embedded default)
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# aws-lc-sys and sqlite build with the C compiler the image has; nothing else is needed.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p api --bin mcp-gateway \
    && cp target/release/mcp-gateway /usr/local/bin/mcp-gateway

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/mcp-gateway --create-home gateway
COPY --from=build /usr/local/bin/mcp-gateway /usr/local/bin/mcp-gateway
USER 10001:10001
WORKDIR /var/lib/mcp-gateway
ENV MGW_LISTEN=0.0.0.0:8080 \
    MGW_DATA_DIR=/var/lib/mcp-gateway \
    RUST_LOG=info
EXPOSE 8080
# The image has no curl: the binary probes itself. Liveness only here; orchestrators ask /ready.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["mcp-gateway", "probe", "http://127.0.0.1:8080/health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["mcp-gateway"]
CMD ["serve"]
