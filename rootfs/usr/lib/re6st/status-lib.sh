# Shared by the status page's CGIs (sourced). RE6ST_LAN (the LAN
# interface) comes from /usr/lib/re6st/status-httpd through httpd.
# shellcheck disable=SC2034 # used by the CGIs that source this
RUN=${RE6ST_RUN:-/run/re6stnet}

# Refuses (403) a client whose address the kernel does not route straight
# out of the LAN interface: only the LAN's own hosts get the page.
lan_client_or_exit() {
  addr=${REMOTE_ADDR#[}
  addr=${addr%]}
  route=$(ip -6 route get "$addr" 2>/dev/null)
  case $route in
    *" via "*) ;;
    *" dev $RE6ST_LAN "*) return 0 ;;
  esac
  printf 'Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nthe status page answers the LAN only\n'
  exit 0
}
