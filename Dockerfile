# slackops: build with the Rust toolchain, run on distroless (glibc, CA certificates, nothing else:
# no shell, no package manager).
#
#   docker build -t slackops:0.1.0 .
#   docker run --rm -p 8080:8080 -v slackops-data:/var/lib/slackops \
#     -e SLACKOPS_SLACK__SIGNING_SECRET_FILE=/run/secrets/signing -e … slackops:0.1.0
#
# Dependencies are compiled in their own layer (cargo-chef), from Cargo.toml and Cargo.lock only,
# so a change to slackops' code rebuilds slackops alone.

ARG RUST_VERSION=1.95

# --- chef: the toolchain plus cargo-chef -------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /src

# --- planner: the dependency "recipe" (changes only when Cargo.toml/Cargo.lock do) -------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- builder: dependencies (cached layer), then slackops ----------------------------------------
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin slackops
COPY . .
# Migrations are embedded in the binary (sqlx::migrate!); SQLite is bundled (no system library).
RUN cargo build --release --locked --bin slackops \
 && install -D -m 0755 target/release/slackops /out/usr/local/bin/slackops \
 && install -d -m 0750 /out/var/lib/slackops

# --- runtime ----------------------------------------------------------------------------------
# distroless "cc": glibc and libgcc for the Rust binary (built on bookworm = Debian 12), and the
# CA certificates Slack's and Gate's TLS are verified against.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="slackops" \
      org.opencontainers.image.description="Spinnaker operations from Slack" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/usr/local/bin/slackops /usr/local/bin/slackops
# The default database (sqlite://slackops.db) is created in the working directory: a volume
# there keeps it. Owned by the runtime user, as the image's root filesystem is read-only in
# Kubernetes (manifests/).
COPY --from=builder --chown=10001:10001 /out/var/lib/slackops /var/lib/slackops
WORKDIR /var/lib/slackops
# A fixed numeric, non-root UID/GID: the same as the Deployment's runAsUser/fsGroup.
USER 10001:10001
EXPOSE 8080
# SIGTERM starts the graceful shutdown (server.shutdown_timeout_secs).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/slackops"]
CMD ["serve"]
