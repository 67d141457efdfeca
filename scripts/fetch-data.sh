#!/usr/bin/env bash
# Fetches the full Fashion-MNIST dataset (60,000 training and 10,000 test
# images, MIT licence, Copyright (c) 2017 Zalando SE) into
# ./data/fashion-mnist/ as the four gzipped IDX files that
# `[data] name = "fashion_mnist", path = "data/fashion-mnist"` reads:
#
#   train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
#   t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
#
# The files come from Debian's package `dataset-fashion-mnist` (the same
# source as the slice embedded in plugins/vision/data). Every file is
# checked against a known checksum before anything is written to ./data.
# Running the script again when the files are present does nothing.
#
# Usage: scripts/fetch-data.sh   (from the repository root)

set -euo pipefail

DEST="data/fashion-mnist"
FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

# SHA-256 of the decompressed files of Debian's package (version
# 0.0~git20200523.55506a9-1).
declare -A SHA256=(
    [train-images-idx3-ubyte]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
    [train-labels-idx1-ubyte]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
    [t10k-images-idx3-ubyte]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
    [t10k-labels-idx1-ubyte]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
)

log() { echo "fetch-data: $*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

all_present() {
    local f
    for f in "${FILES[@]}"; do
        [[ -s "$DEST/$f.gz" ]] || return 1
    done
}

# Checks that checksum $3 of $1/$2.gz is $4.
check_sum() {
    local file=$1/$2.gz kind=$3 expected=$4 sum
    sum=$(gzip -dc "$file" | sha256sum | cut -d' ' -f1)
    if [[ "$sum" != "$expected" ]]; then
        log "checksum mismatch for $2.gz ($kind $sum, expected $expected)"
        return 1
    fi
}

# Downloads Debian's dataset-fashion-mnist into $1 and leaves the four .gz
# files directly in $1.
from_debian() {
    local work=$1
    if ! have apt-get || ! have dpkg-deb; then
        log "apt-get or dpkg-deb not found"
        return 1
    fi
    if ! (cd "$work" && apt-get download dataset-fashion-mnist >/dev/null 2>&1); then
        if [[ $(id -u) -eq 0 ]]; then
            log "refreshing the apt package lists"
            apt-get update >/dev/null || return 1
            (cd "$work" && apt-get download dataset-fashion-mnist >/dev/null) || return 1
        else
            log "apt-get download failed (try 'sudo apt-get update' first)"
            return 1
        fi
    fi
    # Called as a condition, so `set -e` is off here: check every step.
    dpkg-deb -x "$work"/dataset-fashion-mnist_*.deb "$work/pkg" || return 1
    mv "$work"/pkg/usr/share/datasets/fashion-mnist/*-ubyte.gz "$work/" || return 1
    local f
    for f in "${FILES[@]}"; do
        check_sum "$work" "$f" sha256 "${SHA256[$f]}" || return 1
    done
}

main() {
    if all_present; then
        log "$DEST already holds Fashion-MNIST; nothing to do"
        return 0
    fi
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    local work=$WORK
    if ! from_debian "$work"; then
        log "could not download Debian's dataset-fashion-mnist"
        return 1
    fi
    log "downloaded Debian's dataset-fashion-mnist"
    local f
    mkdir -p "$DEST"
    for f in "${FILES[@]}"; do
        mv "$work/$f.gz" "$DEST/$f.gz"
    done
    log "wrote ${FILES[*]/%/.gz} to $DEST"
}

main "$@"
