# Sourced by the scripts: installs the pinned Python reference stack (tests/python/requirements.txt)
# into the git-ignored virtualenv $FOWL_VENV (default .venv), reused while the pin list is
# unchanged, and exports FOWL_VENV. Needs python3 and PyPI the first time.
venv="${FOWL_VENV:-$PWD/.venv}"
requirements=tests/python/requirements.txt
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/twist" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "== installing the Python reference stack into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" > "$venv/.requirements.sha256"
fi
export FOWL_VENV="$venv"
