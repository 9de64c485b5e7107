#!/usr/bin/env bash
# What a device call carries is the working tree (tracked + untracked-not-ignored files), capped at 64 MiB. The
# reference models (reference/, ~44 MB each in float16) alone exceed it. For the length of a device call:
#   scripts/device-tree.sh slim      reference/ leaves the index (the files stay on disk) and is ignored through
#                                    .git/info/exclude, so it does not travel; prints what will
#   scripts/device-tree.sh restore   the index and the exclude list as they were (reference/ from HEAD)
#   scripts/device-tree.sh size      the bytes that would travel now (without carried paths)
# Nothing is committed, and the files under reference/ are never touched. While slim, a pre-commit hook (installed
# by slim where the repository has none, removed by restore) refuses commits: one would record reference/ deleted.
set -euo pipefail
cd "$(dirname "$0")/.." && cd "$(git rev-parse --show-toplevel)"
SLIM_PATH=reference
MARK="# device-tree.sh slim: the next line"  # ignore files take no comment after a pattern
EXCLUDE=$(git rev-parse --git-path info/exclude)
LIMIT=$((64 * 1024 * 1024))
HOOK=$(git rev-parse --git-path hooks/pre-commit)
HOOK_MARK="# device-tree.sh slim guard"

size() {
    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
        if [ -f "$path" ]; then printf '%s\0' "$path"; fi
    done | xargs -0 -r stat -c %s | awk '{ total += $1 } END { print total + 0 }'
}

case "${1:-}" in
    slim)
        if grep -qxF "$MARK" "$EXCLUDE" 2>/dev/null; then
            echo "already slim (run: $0 restore)"; exit 0
        fi
        if ! git diff --cached --quiet -- "$SLIM_PATH"; then
            echo "error: $SLIM_PATH/ has staged changes; commit or unstage them first" >&2; exit 2
        fi
        git rm -r -q --cached --ignore-unmatch -- "$SLIM_PATH"
        mkdir -p "$(dirname "$EXCLUDE")" && printf '%s\n/%s/\n' "$MARK" "$SLIM_PATH" >> "$EXCLUDE"
        if [ ! -e "$HOOK" ]; then
            mkdir -p "$(dirname "$HOOK")"
            printf '#!/bin/sh\n%s\necho "error: the tree is slim for a device call (%s/ out of the index); run scripts/device-tree.sh restore first" >&2\nexit 1\n' \
                "$HOOK_MARK" "$SLIM_PATH" > "$HOOK"
            chmod +x "$HOOK"
        else
            echo "warning: $HOOK exists, so no guard was installed: do not commit until restore" >&2
        fi
        ;;
    restore)
        if ! grep -qxF "$MARK" "$EXCLUDE" 2>/dev/null; then
            echo "not slim: nothing to restore"
        else
            awk -v mark="$MARK" '$0 == mark { skip = 1; next } skip { skip = 0; next } { print }' \
                "$EXCLUDE" > "$EXCLUDE.tmp"
            mv "$EXCLUDE.tmp" "$EXCLUDE"
            git reset -q -- "$SLIM_PATH"
            if [ -f "$HOOK" ] && grep -qxF "$HOOK_MARK" "$HOOK"; then rm -f "$HOOK"; fi
        fi
        ;;
    size) ;;
    *) echo "usage: $0 slim|restore|size" >&2; exit 2 ;;
esac
bytes=$(size)
echo "the working tree that travels: $((bytes / 1024 / 1024)) MiB ($bytes bytes; the limit, carried paths included: 64 MiB)"
[ "$1" != slim ] || [ "$bytes" -le "$LIMIT" ] || { echo "error: still over the limit" >&2; exit 3; }
