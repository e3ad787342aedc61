#!/bin/sh
# Install the Debian packages vdisk needs, only those missing, without starting any service:
# a policy-rc.d that answers 101 keeps postinst scripts (nginx, docker-registry, ...) from starting
# daemons; tests start their own servers on 127.0.0.1 with ephemeral ports.
set -eu
missing=""
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    created=1
fi
trap '[ "$created" = 1 ] && $SUDO rm -f "$policy"' EXIT
echo "installing Debian packages:$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
