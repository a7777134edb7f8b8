#!/usr/bin/env bash
# One-off: renders the Teams card relay makes for the seed's incident
# (docs/examples/seed-incident.json) to docs/teams-card.png, with Microsoft's
# Adaptive Cards renderer (npm `adaptivecards`, tests/validators/) in headless
# Chromium, and writes the Slack message of the same event to
# docs/examples/seed-incident.slack.json. Not part of the build or the tests.
#
# Needs: chromium (Debian: apt-get install chromium), node_modules in
# tests/validators (bash tests/validators/install.sh), a built relay
# ($RELAY, default target/debug/relay).
set -euo pipefail
cd "$(dirname "$0")/.."

chromium="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[ -n "$chromium" ] || { echo "render-teams-card.sh: needs chromium (Debian: apt-get install chromium)" >&2; exit 1; }
lib=tests/validators/node_modules/adaptivecards/dist/adaptivecards.min.js
[ -f "$lib" ] || { echo "render-teams-card.sh: run bash tests/validators/install.sh first" >&2; exit 1; }
relay="${RELAY:-target/debug/relay}"
[ -x "$relay" ] || cargo build

event=docs/examples/seed-incident.json
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$relay" render --plugin teams --event "$event" > "$tmp/message.json"
"$relay" render --plugin slack --event "$event" | python3 -m json.tool --indent 2 > docs/examples/seed-incident.slack.json
cp "$lib" "$tmp/adaptivecards.min.js"

# A Teams-like light host configuration: container styles and action
# buttons as Teams shows them.
cat > "$tmp/page.html" <<HTML
<!DOCTYPE html>
<html><head><meta charset="utf-8">
<style>
  body { margin: 0; padding: 16px; background: #f5f5f5; font-family: "Segoe UI", "DejaVu Sans", sans-serif; }
  #card { width: 460px; background: #fff; border-radius: 6px; box-shadow: 0 1px 4px rgba(0,0,0,.2); overflow: hidden; }
  .ac-pushButton { font: 600 14px "Segoe UI", "DejaVu Sans", sans-serif; padding: 6px 14px; border-radius: 4px;
                   border: 1px solid #c8c6c4; background: #fff; color: #252423; }
  .ac-pushButton.style-destructive { background: #c4314b; border-color: #c4314b; color: #fff; }
  .ac-pushButton.style-positive { background: #5b5fc7; border-color: #5b5fc7; color: #fff; }
</style>
<script src="adaptivecards.min.js"></script>
</head><body><div id="card"></div>
<script>
  const message = $(cat "$tmp/message.json");
  const card = new AdaptiveCards.AdaptiveCard();
  card.hostConfig = new AdaptiveCards.HostConfig({
    fontFamily: "Segoe UI, DejaVu Sans, sans-serif",
    spacing: { small: 4, default: 8, medium: 16, large: 20, extraLarge: 24, padding: 16 },
    containerStyles: {
      default: { backgroundColor: "#FFFFFF", foregroundColors: {
        default: { default: "#252423", subtle: "#605E5C" }, attention: { default: "#C4314B" },
        warning: { default: "#835C00" }, accent: { default: "#4F52B2" }, good: { default: "#237B4B" } } },
      attention: { backgroundColor: "#FCF4F6", foregroundColors: {
        default: { default: "#252423" }, attention: { default: "#C4314B" } } },
      warning: { backgroundColor: "#FBF6D9", foregroundColors: {
        default: { default: "#252423" }, warning: { default: "#835C00" } } },
      accent: { backgroundColor: "#EFF6FC", foregroundColors: {
        default: { default: "#252423" }, accent: { default: "#4F52B2" } } }
    },
    actions: { actionsOrientation: "horizontal", buttonSpacing: 8, showCard: { actionMode: "inline" } }
  });
  card.parse(message.attachments[0].content);
  document.getElementById("card").appendChild(card.render());
</script></body></html>
HTML

"$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
  --window-size=492,448 --screenshot="$PWD/docs/teams-card.png" "file://$tmp/page.html" 2>/dev/null
echo "wrote docs/teams-card.png and docs/examples/seed-incident.slack.json"
