# The one image of Refract: `refract serve` (control plane) and `refract engine` (engines).
# Build: docker build -t registry.example/refract:0.1.0 .
# Multi-stage: the toolchain stays in the builder; the runtime stage has the binary, CA roots
# and an unprivileged user (uid 65532), nothing else.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p refract \
    && install -D -m 0755 target/release/refract /out/refract

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 refract \
    && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/refract --shell /usr/sbin/nologin refract \
    && install -d -o refract -g refract -m 0700 /var/lib/refract
COPY --from=build /out/refract /usr/local/bin/refract
USER 65532:65532
WORKDIR /var/lib/refract
EXPOSE 7700 8080 8081
ENTRYPOINT ["refract"]
CMD ["serve", "--listen", "0.0.0.0:7700", "--data-dir", "/var/lib/refract"]
