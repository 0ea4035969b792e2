#!/bin/sh
# skaffold's default profile runs this on the developer's machine before deploying:
# creates the development Secrets a fresh cluster lacks (a new Ed25519 key pair for
# JWTs, a test Stripe key for localstripe) and leaves existing ones alone.
set -eu

if ! kubectl get secret jwt-keys >/dev/null 2>&1; then
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' EXIT
  openssl genpkey -algorithm ed25519 -out "$dir/private.pem"
  openssl pkey -in "$dir/private.pem" -pubout -out "$dir/public.pem"
  kubectl create secret generic jwt-keys \
    --from-file=private="$dir/private.pem" --from-file=public="$dir/public.pem"
fi

if ! kubectl get secret stripe >/dev/null 2>&1; then
  kubectl create secret generic stripe \
    --from-literal=secret-key=sk_test_local --from-literal=webhook-secret=whsec_local_development
fi
