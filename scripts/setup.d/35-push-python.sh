# The Web Push tests' receiver (tests/push/receiver.py) decrypts with an
# implementation of RFC 8291 that is not ours: Python's http_ece, with
# cryptography for the VAPID signature. Installed into a venv in the cache,
# reinstalled only when tests/push/requirements.txt changes.
source "$(dirname "$0")/../lib.sh"
VENV="$DISPATCH_CACHE/push-venv"
REQ="$ROOT/tests/push/requirements.txt"
stamp="$VENV/.dispatch-req-sha"
sum="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ" \
    || die "pip could not install $REQ into $VENV"
  echo "$sum" >"$stamp"
fi
"$VENV/bin/python" -c 'import http_ece, cryptography; print("push receiver deps: http_ece", http_ece.__version__ if hasattr(http_ece, "__version__") else "", "cryptography", cryptography.__version__)'
