# deploy/test only: copies this machine's ccache (the build context) into the image build's ccache cache mount, so
# that the image's compile finds the objects that the native build made from the same sources and flags.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN --mount=type=cache,id=alignd-ccache,target=/root/.cache/ccache --mount=type=bind,target=/seed \
    cp -a /seed/. /root/.cache/ccache/ && du -sh /root/.cache/ccache
