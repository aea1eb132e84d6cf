#!/usr/bin/env bash
# The CLI path on the demo data (or on FER-2013: set DATA to the zip or the Kaggle CSV).
set -euo pipefail
work=$(mktemp -d)
DATA=${DATA:-}
if [ -z "$DATA" ]; then
    ferclean demo --out "$work/demo.csv"            # the built-in demo, as a Kaggle CSV
    DATA="$work/demo.csv"
fi
ferclean audit "$DATA" --out "$work/audit" --html "$work/report.html"
ferclean clean "$DATA" --plan strict --out "$work/clean"
ferclean restore "$work/clean" --out "$work/restored.csv"   # nothing is lost
ferclean publish "$DATA" --plan strict --out "$work/release"
(cd "$work/release" && sha256sum -c --quiet SHA256SUMS)
echo "outputs in $work"
