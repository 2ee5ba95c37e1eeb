#!/usr/bin/env bash
# One install for every place the project runs: the README's quick start, CI (.ci/run) and
# local GPU boxes. Debian packages, a virtual environment at .venv/ in the checkout, torch first,
# then pinned packages under a torch constraint, then the torch-pinned packages without deps.
#
#   scripts/install.sh            CPU (torch 2.13.0, the build on these machines)
#   scripts/install.sh --cuda     CUDA box (torch 2.11.0 + torchaudio 2.11.0 wheels)
#   scripts/install.sh --no-apt   skip Debian packages (already installed, or not root)
#   scripts/install.sh --dev      also install test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."

mode=cpu apt=1 dev=0
for arg in "$@"; do
  case "$arg" in
    --cuda) mode=cuda ;;
    --no-apt) apt=0 ;;
    --dev) dev=1 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

APT_PACKAGES=(ffmpeg libsndfile1 rubberband-cli fluidsynth fluid-soundfont-gm)
if [ "$apt" = 1 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

PY=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)

if [ "$mode" = cuda ]; then
  torch_spec="torch==2.11.0"
else
  torch_spec="torch==2.13.0"
fi
constraint=$(mktemp); trap 'rm -f "$constraint"' EXIT
echo "$torch_spec" > "$constraint"

if [ "$mode" = cuda ]; then
  # The PyPI torch 2.11 wheel is a CUDA 13 build (driver >= 580); cu128 matches the Cog image.
  "${pip[@]}" --extra-index-url https://download.pytorch.org/whl/cu128 "$torch_spec" torchaudio==2.11.0
else
  "${pip[@]}" "$torch_spec"
fi
"${pip[@]}" -r requirements/base.txt -c "$constraint"
"${pip[@]}" --no-deps -r requirements/nodeps.txt
if [ "$mode" = cpu ]; then
  # torchaudio has no build for torch 2.13; without its compiled libraries it imports in
  # pure-Python mode, which covers what audiocraft uses (Spectrogram, Loudness).
  "${pip[@]}" --no-deps torchaudio==2.11.0
  rm -f .venv/lib/python3.11/site-packages/torchaudio/lib/*.so
fi
[ "$dev" = 1 ] && "${pip[@]}" -r requirements/dev.txt -c "$constraint"
"${pip[@]}" --no-deps -e .
echo "installed into .venv ($mode)"
