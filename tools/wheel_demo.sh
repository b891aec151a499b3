#!/usr/bin/env bash
# Build sitewatch's wheel, install it into a new virtual environment and run `sitewatch demo` from
# an empty folder outside the repository: the default model, its checksum, the change rules and
# the demo site must come from the installed package, not from the checkout.
#
# The new environment gets sitewatch's dependencies from .venv (a read-only view of its
# site-packages without the editable sitewatch), so no second 6.5 GB PyTorch is downloaded;
# `pip install --no-index` still resolves every requirement of the wheel against it and fails if
# one is missing. Usage: tools/wheel_demo.sh (after the README's install; .ci/run calls it).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== building the sdist and, from it, the wheel"
"$repo/.venv/bin/python" -m build --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log"; exit 1; }
wheel="$(ls "$work"/dist/sitewatch-*.whl)"
echo "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

echo "== installing it into a new environment"
python3 -m venv --without-pip "$work/venv"  # pip and setuptools come from the shared view too
deps_view="$work/deps"
mkdir "$deps_view"
dev_site="$("$repo/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
for entry in "$dev_site"/*; do
  case "$(basename "$entry")" in
    sitewatch*|__editable__*sitewatch*|_sitewatch*) ;;  # the editable checkout stays out
    *) ln -s "$entry" "$deps_view/" ;;
  esac
done
new_site="$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$deps_view" >"$new_site/zz_sitewatch_dependencies.pth"
"$work/venv/bin/python" -m pip install --no-index --disable-pip-version-check -q "$wheel"
echo "installed: $("$work/venv/bin/python" -m pip show sitewatch | grep -E '^(Name|Version|Location)' | tr '\n' ' ')"

echo "== sitewatch demo from an empty folder"
mkdir "$work/elsewhere"
cd "$work/elsewhere"
"$work/venv/bin/python" - <<'EOF'
import sitewatch, sitewatch.paths as paths
assert "site-packages" in sitewatch.__file__, sitewatch.__file__
print(f"sitewatch imported from {sitewatch.__file__}; model {paths.default_model_path()}")
EOF
"$work/venv/bin/sitewatch" demo --out demo_out
test -s demo_out/summary.json && test -s demo_out/report.html
echo "wheel demo OK: $(ls demo_out | tr '\n' ' ')"
