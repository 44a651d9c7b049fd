#!/bin/sh
# Run as the last step of every sandbox image build (as root): strips what a
# submission could use or what only bloats the image.
set -eu
# No setuid/setgid binaries: the sandbox user must have no way up.
find / -xdev -perm /6000 -type f -exec chmod ug-s {} +
# No package caches or indexes, no docs.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \
       /var/log/apt /var/log/dpkg.log /var/log/alternatives.log \
       /usr/share/doc/* /usr/share/man/* /usr/share/info/* /tmp/* /var/tmp/*
# Nothing world-writable outside the tmpfs mounts the runner provides.
find / -xdev -type d -perm -0002 ! -path /tmp ! -path /var/tmp ! -path '/dev/*' ! -path '/proc/*' \
     -exec chmod o-w {} + 2>/dev/null || true
if find / -xdev -perm /6000 -type f | grep -q .; then
  echo "sandbox-harden: setuid/setgid files remain" >&2
  exit 1
fi
