#!/usr/bin/env bash
# Refresh the web console's vendored libraries (aiges/server/http/static/vendor) from npm, at the
# pinned versions below: nothing is fetched from a CDN at run time, and the wheel carries them.
# Files are copied as npm ships them, with their licences; vendor/README.md lists them with
# their sha256 (rerun this script after changing a version, then update the README).
set -euo pipefail
cd "$(dirname "$0")/.."
PREACT=preact@10.29.8
HTM=htm@3.1.1
SWAGGER=swagger-ui-dist@5.35.0
vendor=aiges/server/http/static/vendor
command -v npm >/dev/null || { echo "vendor_web: npm is needed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for package in "$PREACT" "$HTM" "$SWAGGER"; do
  (cd "$work" && npm pack --silent "$package" >/dev/null)
done
unpack() { rm -rf "$work/package" && tar xzf "$work/$1"-*.tgz -C "$work"; }
rm -rf "$vendor/preact" "$vendor/htm" "$vendor/swagger-ui"
mkdir -p "$vendor/preact" "$vendor/htm" "$vendor/swagger-ui"
unpack preact
cp "$work/package/dist/preact.module.js" "$work/package/hooks/dist/hooks.module.js" "$work/package/LICENSE" "$vendor/preact/"
unpack htm
cp "$work/package/dist/htm.module.js" "$work/package/LICENSE" "$vendor/htm/"
unpack swagger-ui-dist
cp "$work/package/"{swagger-ui-bundle.js,swagger-ui-bundle.js.LICENSE.txt,swagger-ui.css,LICENSE,NOTICE} "$vendor/swagger-ui/"
(cd "$vendor" && sha256sum */* | grep -v README)
du -sh "$vendor"
