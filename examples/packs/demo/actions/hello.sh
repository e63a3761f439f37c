#!/bin/bash
# Parameters arrive as dotenv lines (name='world') on stdin: safe to eval in bash.
set -euo pipefail
name=world
times=1
eval "$(cat)"
echo "greeting ${name} ${times} time(s)" >&2
greeting=""
for _ in $(seq 1 "$times"); do greeting+="Hello, ${name}! "; done
# JSON-escape the greeting (backslash and double quote) without external tools.
greeting="${greeting% }"
greeting="${greeting//\\/\\\\}"
greeting="${greeting//\"/\\\"}"
printf '{"greeting": "%s", "count": %d, "host": "%s", "execution": %s}\n' \
  "$greeting" "$times" "$(hostname 2>/dev/null || echo unknown)" "${ATTUNE_EXEC_ID:-0}"
