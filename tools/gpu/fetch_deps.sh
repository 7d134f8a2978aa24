#!/usr/bin/env bash
# Run on a networked machine (this kind): downloads the Debian packages the GPU machine lacks
# (yaml-cpp, sentencepiece, GoogleTest, nlohmann-json, CLI11, pcre2, utf8proc) into tools/gpu/debs/ (git-ignored).
# tools/gpu/check.sh unpacks them into a private prefix there. Name tools/gpu/debs in `carry`.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p debs && cd debs
pkgs=(libyaml-cpp-dev libyaml-cpp0.7 libsentencepiece-dev libsentencepiece0 libprotobuf-lite32
      libgtest-dev libgmock-dev googletest nlohmann-json3-dev libcli11-dev
      libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2)
apt-get download "${pkgs[@]}" >/dev/null
ls -1 *.deb
