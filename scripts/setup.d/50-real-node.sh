# What the real node needs from Debian: containerd and runc, the CNI plugins, iptables,
# ipset and conntrack (kube-proxy, kube-router), debootstrap and buildah (the images), tini
# (the pause image's PID 1), objcopy, openssl, ping. The Kubernetes programs come from
# tests/kube/build-tools.sh (40-kube).
source "$(dirname "$0")/../lib.sh"
PKGS=(containerd runc containernetworking-plugins iptables ipset conntrack debootstrap buildah
  tini binutils openssl iputils-ping iproute2)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
containerd --version
