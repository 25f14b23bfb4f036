# System packages the tests need: Debian's Chromium for the browser tests, and
# vim, which the agent's holder test runs in a terminal across agent crashes.
source "$(dirname "$0")/../lib.sh"
if ! command -v chromium >/dev/null 2>&1 || ! command -v vim >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core vim >/dev/null
fi
chromium --version
vim --version | head -1
