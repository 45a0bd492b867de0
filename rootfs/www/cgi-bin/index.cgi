#!/bin/sh
# The router's status page (busybox httpd CGI; also /metrics/, which httpd
# hands here as a directory without an index). Read-only, reads no input.
# Answers only LAN clients: /usr/lib/re6st/status-httpd binds httpd to the
# LAN address, and a request that reached it another way (a peer through
# the overlay, a WAN neighbour routing to it) is refused here.
. /usr/lib/re6st/status-lib.sh
case $REQUEST_URI in
  /metrics|/metrics/|/metrics\?*|/metrics/\?*) exec /www/cgi-bin/metrics ;;
esac
lan_client_or_exit
printf 'Content-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n\r\n'
{
  echo @json
  re6st ctl status --json -r "$RUN" 2>/dev/null
  echo
  echo @init
  re6st init status 2>/dev/null
  echo @release
  cat /etc/re6st-release 2>/dev/null
  echo "HOSTNAME=$(hostname)"
  echo @routes
  ip -6 route show 2>/dev/null
} | awk -f /usr/lib/re6st/status-page.awk
