#!/usr/bin/env bash
# vLLM with retention-middleware in-process. vLLM builds the middleware with no arguments, so every
# setting comes from RETENTION_* variables. Usage:
#
#   RETENTION_STORE=mongodb://db.internal:27017 RETENTION_TENANT_SECRET=... examples/vllm_serve.sh Qwen/Qwen3-4B
#
# Needs vLLM (0.10 or 0.11, see the README) and retention-middleware installed in the same environment.
set -euo pipefail

model=${1:?usage: $0 MODEL [more vllm serve arguments]}
shift

export RETENTION_STORE=${RETENTION_STORE:-memory}  # memory is per process: use MongoDB in production
export RETENTION_TTL=${RETENTION_TTL:-30d}
if [[ -z ${RETENTION_TENANT_SECRET:-} ]]; then
    echo "vllm_serve.sh: RETENTION_TENANT_SECRET is unset: every caller shares one tenant" >&2
fi
# vLLM's own Responses store stays off: the middleware forwards with store=false and keeps the state.
export VLLM_ENABLE_RESPONSES_API_STORE=0

# --disable-uvicorn-access-log: uvicorn's access line prints query strings; the middleware's replaces it.
exec vllm serve "$model" \
    --middleware retention_middleware.RetentionMiddleware \
    --disable-uvicorn-access-log \
    "$@"
