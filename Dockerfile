# tgp as a static binary in an empty image.
#   docker build -t tgp:0.2.0 .
#   docker run --rm tgp:0.2.0 --help
# The binary is linked against musl, so it needs nothing from the image: TLS is rustls (ring), the
# Paperspace price table is compiled in, and tgp reads no file it is not given.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tgp --bin tgp --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/tgp /tgp

FROM scratch
COPY --from=build /tgp /tgp
# Not root: tgp needs no privilege.
USER 65532:65532
ENTRYPOINT ["/tgp"]
