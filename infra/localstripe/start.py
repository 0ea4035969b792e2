"""Starts localstripe, then registers payments' webhook endpoint (signed with
STRIPE_WEBHOOK_SECRET) with it, and stays in the foreground as localstripe."""
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

PORT = os.environ.get("PORT", "8420")
WEBHOOK_URL = os.environ.get(
    "WEBHOOK_URL", "http://payments-srv:3000/api/payments/webhooks/stripe"
)

# memory.py beside this file: localstripe that does not slow down as its objects pile up.
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "localstripe-memory")
server = subprocess.Popen([sys.executable, LAUNCHER, "--port", PORT, "--from-scratch"])
body = urllib.parse.urlencode(
    {"url": WEBHOOK_URL, "secret": os.environ["STRIPE_WEBHOOK_SECRET"]}
).encode()
for _ in range(120):
    try:
        urllib.request.urlopen(
            f"http://127.0.0.1:{PORT}/_config/webhooks/ticketing", data=body, timeout=2
        )
        print(f"webhook registered: {WEBHOOK_URL}", flush=True)
        break
    except OSError:
        if server.poll() is not None:
            sys.exit(server.returncode)
        time.sleep(0.5)
else:
    print("could not register the webhook; payments settles by its reconciler", flush=True)
sys.exit(server.wait())
