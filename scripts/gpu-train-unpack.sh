#!/usr/bin/env bash
# Here, after a device call of scripts/gpu-train.sh: `scripts/gpu-train-unpack.sh FROM DEST` (make gpu-train-results)
# checks the parts against their sha256 sums, joins them and unpacks each kept run (its float16 model and records)
# and the records of every run under DEST, written whole or not at all.
set -euo pipefail
from=${1:?usage: gpu-train-unpack.sh FROM DEST}
dest=${2:?usage: gpu-train-unpack.sh FROM DEST}
[[ -f "$from/records.tgz" ]] || { echo "gpu-train-unpack: $from holds no records.tgz (give the files_at of the call)"; exit 2; }
[[ ! -e "$dest" ]] || { echo "gpu-train-unpack: $dest exists: give a new folder, or move it away"; exit 2; }
staging=$(mktemp -d "$(dirname "$dest")/.gpu-unpack.XXXXXX")
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/records"
tar xzf "$from/records.tgz" -C "$staging/records"
cp "$from/gpu-train.log" "$staging/" 2>/dev/null || true
if [[ -s "$staging/records/parts.sha256" ]]; then
    (cd "$from" && sha256sum --quiet -c "$staging/records/parts.sha256") \
        || { echo "gpu-train-unpack: a part differs from its sum: fetch the call's files again"; exit 2; }
fi
for first in "$from"/*.tar.part-00; do
    [[ -e "$first" ]] || continue
    cat "${first%-00}"-* | tar xf - -C "$staging"
done
mv "$staging" "$dest"
trap - EXIT
echo "gpu-train-unpack: $(ls "$dest" | tr '\n' ' ')-> $dest"
