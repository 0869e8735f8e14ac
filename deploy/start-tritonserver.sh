#!/bin/sh
# Starts tritonserver with the arguments given, adding --allow-client-shm=true when this release
# has that flag. From Triton 2.69 (26.05) on, clients may register shared memory only when the
# server is started with it (server PR #8739, docs/protocol/extension_shared_memory.md); earlier
# releases such as 24.10 (2.51) allow it always and refuse the unknown flag. Asking the binary
# itself keeps one image definition right for whichever release TRITON_RELEASE picks.
set -eu
if tritonserver --help 2>&1 | grep -q -e '--allow-client-shm'; then
  set -- "$@" --allow-client-shm=true
fi
exec tritonserver "$@"
