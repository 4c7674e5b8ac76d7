# carrier: SQS → webhook sidecar. Two stages:
#   builder  the official Rust image runs scripts/build-static, which builds one static glibc
#            executable and lays out everything the final image holds under /out
#   final    FROM scratch: /out copied to /, nothing else (no shell, no package manager, no libc);
#            runs as 1000:1000 and writes nothing, so a read-only root filesystem is fine
#
#   docker build -t carrier .                 (BuildKit, the default since Docker 23)
#   buildah build --layers -t carrier .
# scripts/check-image builds the final stage from a host build instead of running the builder:
#   buildah build --target final --build-context builder=DIR .   (DIR/out laid out as /out here)

FROM docker.io/library/rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds of this Dockerfile;
# scripts/build-static copies the result out of target/ into /src/dist and /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    scripts/build-static --rootfs /out

FROM scratch AS final
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="carrier" \
      org.opencontainers.image.description="SQS to webhook sidecar: a drop-in Rust replacement for amplify-security/carrier" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/ /
USER 1000:1000
ENTRYPOINT ["/carrier"]
