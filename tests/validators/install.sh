#!/usr/bin/env bash
# Installs the third-party validators the plugin tests run (DESIGN.md §15):
#   - PyPI: slack_sdk (Block Kit), cefevent (CEF, strict mode),
#           openapi-spec-validator, prometheus-client (tests/admin.rs),
#           aiosmtpd (tests/email.rs's SMTP server) -> requirements.txt
#   - npm:  adaptivecards 3.x (Adaptive Cards, under Node)      -> package-lock.json
# Idempotent: pinned pip requirements already satisfied are left alone, and
# `npm ci` reinstalls node_modules/ here from the lockfile.
# Interpreters: $RELAY_PYTHON (default python3) and node/npm on PATH.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${RELAY_PYTHON:-python3}"

command -v "$python" >/dev/null || { echo "install.sh: $python not found (install Python 3 with pip)" >&2; exit 1; }
command -v npm >/dev/null || { echo "install.sh: npm not found (install Node.js 18+ with npm)" >&2; exit 1; }

PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements.txt"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

"$python" -c 'import slack_sdk, cefevent, openapi_spec_validator, prometheus_client, aiosmtpd' \
    && (cd "$here" && node -e 'require("adaptivecards/dist/adaptivecards.js")') \
    && echo "validators installed: slack_sdk, cefevent, openapi-spec-validator, prometheus-client, aiosmtpd (pip), adaptivecards (npm, $here/node_modules)"
