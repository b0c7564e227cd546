# durlab: a static cgo build in a small, non-root runtime image.
#   docker build -t durlab --build-arg DURLAB_VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg DURLAB_COMMIT="$(git rev-parse HEAD)" .
#   docker run --rm -v durlab-data:/data durlab basic
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .git stays out of the build context (.dockerignore): the version comes in
# as build arguments, stamped by scripts/version-ldflags.sh.
ARG DURLAB_VERSION=
ARG DURLAB_COMMIT=
RUN DURLAB_VERSION="$DURLAB_VERSION" DURLAB_COMMIT="$DURLAB_COMMIT" ./scripts/build-static.sh /out/durlab && mkdir -p -m 0700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/durlab /usr/local/bin/durlab
COPY --from=build --chown=65532:65532 /out/data /data
ENV DURLAB_DATA_DIR=/data
WORKDIR /data
VOLUME /data
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/durlab"]
CMD ["--help"]
