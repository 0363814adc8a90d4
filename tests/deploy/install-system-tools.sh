#!/bin/sh
# Install the system tools the deployment tests use, from Debian's packages:
#   nginx (/usr/sbin/nginx)           tests/deploy/test_nginx.py
#   systemd (/usr/bin/systemd-analyze) tests/deploy/test_systemd.py
#   prometheus (/usr/bin/promtool)    tests/deploy/test_monitoring.py (about 20 MB)
# Only as root with apt-get; otherwise, or when all are present, it does nothing.
# It never fails the run: a missing tool makes its test skip with a reason instead.
# Idempotent and quiet (one line when it installs something or cannot).

want=""
[ -x /usr/sbin/nginx ] || want="nginx"
command -v systemd-analyze >/dev/null 2>&1 || want="$want systemd"
command -v promtool >/dev/null 2>&1 || want="$want prometheus"
[ -n "$want" ] || exit 0

if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-tools: not root with apt-get; the tests needing$want will skip" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    # nginx-light is the smallest flavour; newer Debian releases only ship nginx.
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}
update_done=""
for tool in $want; do
    case "$tool" in
        nginx) candidates="nginx-light nginx" ;;
        *) candidates="$tool" ;;
    esac
    for package in $candidates; do
        if apt_install "$package"; then
            echo "install-system-tools: installed $package" >&2
            break
        fi
        if [ -z "$update_done" ]; then
            # The package lists may be missing or stale: refresh them once, then retry.
            apt-get update -qq >/dev/null 2>&1
            update_done=1
            if apt_install "$package"; then
                echo "install-system-tools: installed $package" >&2
                break
            fi
        fi
    done
done
# Only promtool is wanted from the prometheus package: where systemd runs, stop and disable
# the Prometheus server it may have started (it was not installed before this script).
case " $want " in
    *" prometheus "*)
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            # One unit a call: systemctl fails as a whole when one of several is missing.
            for unit in prometheus prometheus-node-exporter; do
                systemctl disable --now "$unit" >/dev/null 2>&1
            done
        fi
        ;;
esac
# The tests run their own nginx (on a free loopback port, files in a temporary directory):
# a system nginx that the package may have started on port 80 is not used by them.
exit 0
