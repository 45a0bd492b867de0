# The router's status page (HTML with an inline SVG drawing), rendered by
# busybox awk from sections the CGI (/www/cgi-bin/index.cgi) concatenates:
#   @json     `re6st ctl status --json` (the node; empty when it is down)
#   @init     `re6st init status` (milestones, boot slot, services)
#   @release  /etc/re6st-release (board, version, build date)
#   @routes   `ip -6 route` (the peers behind each tunnel)
# Busybox awk has no math functions: the drawing is a left-to-right tree
# (this router, its tunnels' peers, the nodes routed through them).

/^@(json|init|release|routes)$/ { section = substr($0, 2); next }
section == "json" { json = json $0 "\n"; next }
section == "init" { init[++ninit] = $0; next }
section == "release" { if (split($0, kv, "=") >= 2) release[kv[1]] = substr($0, length(kv[1]) + 2); next }
section == "routes" { routes[++nroutes] = $0; next }

# --- JSON: flattened into J["a.b.0.c"]; arrays' lengths in J["a.b#"] ---
function ws() { while (substr(json, pos, 1) ~ /[ \t\r\n]/) pos++ }
function jstring(   out, c, esc) {
    pos++   # the opening quote
    out = ""
    while (pos <= length(json)) {
        c = substr(json, pos, 1)
        if (c == "\"") { pos++; return out }
        if (c == "\\") {
            esc = substr(json, pos + 1, 1)
            if (esc == "n") c = "\n"; else if (esc == "t") c = "\t"
            else if (esc == "u") { c = "?"; pos += 4 }
            else c = esc
            pos++
        }
        out = out c
        pos++
    }
    bad = 1
    return out
}
function jvalue(path,   c, key, n, rest) {
    ws()
    c = substr(json, pos, 1)
    if (c == "{") {
        pos++; ws()
        if (substr(json, pos, 1) == "}") { pos++; return }
        while (!bad) {
            ws()
            if (substr(json, pos, 1) != "\"") { bad = 1; return }
            key = jstring(); ws()
            if (substr(json, pos, 1) != ":") { bad = 1; return }
            pos++
            jvalue(path == "" ? key : path "." key)
            ws(); c = substr(json, pos, 1); pos++
            if (c == "}") return
            if (c != ",") { bad = 1; return }
        }
    } else if (c == "[") {
        pos++; ws(); n = 0
        if (substr(json, pos, 1) == "]") { pos++; J[path "#"] = 0; return }
        while (!bad) {
            jvalue(path "." n); n++
            ws(); c = substr(json, pos, 1); pos++
            if (c == "]") { J[path "#"] = n; return }
            if (c != ",") { bad = 1; return }
        }
    } else if (c == "\"") {
        J[path] = jstring()
    } else {
        rest = substr(json, pos)
        if (!match(rest, /^[-+0-9.eEa-z]+/)) { bad = 1; return }
        J[path] = substr(rest, 1, RLENGTH)
        if (J[path] == "null") delete J[path]
        pos += RLENGTH
    }
}

function h(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); gsub(/"/, "\\&quot;", s); return s }
function dflt(s, d) { return s == "" ? d : s }
function row(k, v) { printf "<tr><th>%s</th><td>%s</td></tr>\n", k, v }
function mib(b) { return int(b / 1048576) " MiB" }
function load(x) { return int(x / 100) "." sprintf("%02d", x % 100) }
function bytes(b) {
    if (b == "") return "-"
    b += 0
    if (b >= 10485760) return int(b / 1048576) " MiB"
    if (b >= 10240) return int(b / 1024) " KiB"
    return b " B"
}
function duration(s,   d, hh, m) {
    d = int(s / 86400); hh = int(s / 3600) % 24; m = int(s / 60) % 60
    return (d ? d "d " : "") (d || hh ? hh "h " : "") sprintf("%02dm", m)
}

END {
    pos = 1; bad = 0
    node_up = json ~ /^[ \t\r\n]*\{/
    if (node_up) jvalue("")
    if (bad) node_up = 0
    # init: "milestones: a b c", "slot: ...", then the service table.
    milestones = ""; slot = ""; node_service = ""
    for (i = 1; i <= ninit; i++) {
        if (init[i] ~ /^milestones:/) milestones = substr(init[i], 13)
        else if (init[i] ~ /^slot:/) slot = substr(init[i], 7)
        else if (split(init[i], f, " ") >= 2 && f[1] == "re6st-node") node_service = f[2] " (restarts " f[4] ")"
    }
    provisioned = (" " milestones " ") ~ / provisioned /

    print "<!DOCTYPE html>"
    print "<html lang=\"en\"><head><meta charset=\"utf-8\">"
    print "<meta name=\"viewport\" content=\"width=device-width\">"
    printf "<title>re6st router %s</title>\n", h(dflt(release["HOSTNAME"], release["BOARD"]))
    print "<style>body{font-family:sans-serif;margin:1em 2em;color:#222}table{border-collapse:collapse;margin-bottom:1.5em}"
    print "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.92em}th{background:#f2f2f2}"
    print "td.n{text-align:right}.established{color:#176f2c}.connecting,.closing,.draining{color:#9a5b00}"
    print "svg text{font-size:11px;font-family:sans-serif}</style></head><body>"
    printf "<h1>re6st router %s</h1>\n", h(release["HOSTNAME"])

    print "<h2>Router</h2><table id=\"router\">"
    row("Provisioning", provisioned ? "provisioned" : "not provisioned yet")
    row("Init milestones", h(dflt(milestones, "-")))
    row("Node service", h(dflt(node_service, "-")))
    row("Firmware", h(dflt(release["GIT"], "?")) " (" h(release["BOARD"]) ", " h(release["ARCH"]) ", built " h(release["BUILD_DATE"]) ")")
    row("Boot slot", h(dflt(slot, "no A/B layout")))
    if (node_up) {
        row("Address", h(J["address"]) " (subnet " h(J["subnet"]) " of " h(J["network"]) ")")
        left = int((J["cert_not_after"] - systime()) / 86400)
        row("Certificate valid until", strftime("%Y-%m-%d %H:%M UTC", J["cert_not_after"]) " (" left " days left)")
        row("Configuration version", h(J["config_version"]))
        row("Registry", J["registry_cut"] == "true" ? "no route to its node" : "reachable through the overlay")
        row("Peer cache", h(J["cached_peers"]) " addresses; routes to " h(J["known_nodes"]) " nodes")
        row("Reachable at", h(dflt(J["reachable_at"], "no address known yet (client tunnels only)")))
        row("IPv4 address known by", h(J["ipv4"]))
        m = ""
        for (i = 0; i < J["port_mappings#"]; i++) m = m (i ? "<br>" : "") h(J["port_mappings." i])
        row("UPnP port mappings", dflt(m, "none"))
        row("Restarts", "babeld " h(J["babeld_restarts"]) ", OpenVPN " h(J["openvpn_restarts"]))
        if ("system.uptime_seconds" in J) {
            row("Uptime", duration(J["system.uptime_seconds"]))
            row("Memory", mib(J["system.memory_available_bytes"]) " available of " mib(J["system.memory_total_bytes"]))
            row("CPU load (1, 5, 15 min)", load(J["system.load_hundredths.0"]) " " load(J["system.load_hundredths.1"]) " " load(J["system.load_hundredths.2"]))
        }
    } else {
        row("Node", "not running (no answer from re6st ctl status)")
    }
    print "</table>"

    ntun = node_up ? J["tunnels#"] + 0 : 0
    nserved = node_up ? J["served#"] + 0 : 0
    printf "<h2>Tunnels (%d)</h2>\n<table id=\"tunnels\"><tr><th>Peer</th><th>Interface</th><th>Protocol</th><th>State</th><th>Routes</th><th>Received</th><th>Sent</th><th>Peer address</th></tr>\n", ntun
    for (i = 0; i < ntun; i++) {
        t = "tunnels." i "."
        st = J[t "state"]
        printf "<tr class=\"tunnel\"><td>%s</td><td>%s</td><td>%s</td><td class=\"%s\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td>%s</td></tr>\n", h(J[t "peer"]), h(J[t "iface"]), h(dflt(J[t "protocol"], "-")), h(st), h(st), h(J[t "routes"]), bytes(J[t "rx_bytes"]), bytes(J[t "tx_bytes"]), h(dflt(J[t "address"], "-"))
    }
    print "</table>"
    printf "<h2>Peers on this router's servers (%d)</h2>\n<table id=\"served\"><tr><th>Peer</th></tr>\n", nserved
    for (i = 0; i < nserved; i++) printf "<tr class=\"served\"><td>%s</td></tr>\n", h(J["served." i])
    print "</table>"
    nst = node_up ? J["served_traffic#"] + 0 : 0
    if (nst) {
        print "<table id=\"served-traffic\"><tr><th>Client</th><th>Server</th><th>Received</th><th>Sent</th></tr>"
        for (i = 0; i < nst; i++) {
            t = "served_traffic." i "."
            printf "<tr><td>%s</td><td>%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n", h(J[t "peer"]), h(J[t "iface"]), bytes(J[t "bytes_received"]), bytes(J[t "bytes_sent"])
        }
        print "</table>"
    }

    # --- the drawing -------------------------------------------------
    # Neighbours: one per client tunnel (by interface) and one per served
    # peer (by the next hop of the route to its prefix on a server
    # interface). Behind each, the other prefixes routed through it.
    nn = 0
    for (i = 0; i < ntun; i++) {
        nn++; nlabel[nn] = J["tunnels." i ".peer"]; nstate[nn] = J["tunnels." i ".state"]
        nkey[nn] = J["tunnels." i ".iface"]; nsub[nn] = dflt(J["tunnels." i ".protocol"], "-") " " nkey[nn]
        bykey[nkey[nn]] = nn
    }
    # Babel's routes through the overlay: PREFIX via LLADDR dev IFACE ...
    for (i = 1; i <= nroutes; i++) {
        n = split(routes[i], f, " ")
        dst = f[1]; via = ""; dev = ""
        for (k = 2; k < n; k++) { if (f[k] == "via") via = f[k + 1]; if (f[k] == "dev") dev = f[k + 1] }
        if (via == "" || dev == "" || dst == "default") continue
        rdst[i] = dst; rdev[i] = dev; rvia[i] = via
    }
    for (i = 0; i < nserved; i++) {
        p = J["served." i]
        nn++; nlabel[nn] = p; nstate[nn] = "served"; nsub[nn] = "client of our server"
        for (r = 1; r <= nroutes; r++)
            if (rdst[r] == p && !((rdev[r]) in bykey)) { nkey[nn] = rdev[r] " " rvia[r]; nsub[nn] = "client of our server " rdev[r]; bykey[nkey[nn]] = nn }
    }
    nb = 0
    for (r = 1; r <= nroutes; r++) {
        if (rdst[r] == "") continue
        owner = (rdev[r] in bykey) ? bykey[rdev[r]] : ((rdev[r] " " rvia[r]) in bykey ? bykey[rdev[r] " " rvia[r]] : 0)
        if (!owner || rdst[r] == nlabel[owner]) continue
        if (nbehind[owner] >= 6) { more[owner]++; continue }
        nbehind[owner]++; nb++; bowner[nb] = owner; blabel[nb] = rdst[r]
    }
    # Layout: a row per neighbour (taller for the nodes behind it).
    y = 30
    for (i = 1; i <= nn; i++) {
        rows = nbehind[i] + (more[i] ? 1 : 0); if (rows < 1) rows = 1
        ny[i] = y + (rows - 1) * 11; top[i] = y; y += rows * 22 + 8
    }
    height = (y > 80 ? y : 80)
    cy = int(height / 2)
    printf "<h2>Neighbourhood</h2>\n<svg id=\"neighbourhood\" xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"%d\" viewBox=\"0 0 760 %d\">\n", height, height
    for (i = 1; i <= nn; i++) {
        col = nstate[i] == "established" || nstate[i] == "served" ? "#2b8a3e" : "#d08c00"
        printf "<line class=\"tunnel-edge\" x1=\"90\" y1=\"%d\" x2=\"280\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", cy, ny[i], col, (nstate[i] == "served" ? " stroke-dasharray=\"5,3\"" : "")
    }
    for (b = 1; b <= nb; b++) {
        o = bowner[b]; by[b] = top[o] + (b - first_of(o)) * 22
        printf "<line class=\"behind-edge\" x1=\"440\" y1=\"%d\" x2=\"560\" y2=\"%d\" stroke=\"#999\"/>\n", ny[o], by[b]
    }
    printf "<circle class=\"self\" cx=\"70\" cy=\"%d\" r=\"20\" fill=\"#1c5fa8\"/>\n", cy
    printf "<text x=\"70\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", cy + 34, (node_up ? h(J["subnet"]) : "this router")
    for (i = 1; i <= nn; i++) {
        printf "<g class=\"peer-node\"><circle class=\"peer\" cx=\"290\" cy=\"%d\" r=\"10\" fill=\"%s\"/>", ny[i], (nstate[i] == "established" || nstate[i] == "served") ? "#2b8a3e" : "#d08c00"
        printf "<text x=\"306\" y=\"%d\">%s</text><text x=\"306\" y=\"%d\" fill=\"#666\">%s%s</text></g>\n", ny[i] - 1, h(nlabel[i]), ny[i] + 11, h(nsub[i]), (nstate[i] == "served" ? "" : ", " h(nstate[i]))
    }
    for (b = 1; b <= nb; b++)
        printf "<g class=\"behind-node\"><circle class=\"behind\" cx=\"566\" cy=\"%d\" r=\"6\" fill=\"#888\"/><text x=\"578\" y=\"%d\">%s</text></g>\n", by[b], by[b] + 4, h(blabel[b])
    for (i = 1; i <= nn; i++)
        if (more[i]) printf "<text x=\"578\" y=\"%d\" fill=\"#666\">and %d more</text>\n", top[i] + nbehind[i] * 22 + 4, more[i]
    if (!nn) printf "<text x=\"110\" y=\"%d\">no tunnel yet</text>\n", cy + 4
    print "</svg>"
    print "<p>Read-only; figures from <code>re6st ctl status</code> and <code>re6st init status</code>. Prometheus metrics: <a href=\"/metrics\">/metrics</a>.</p>"
    print "</body></html>"
}

# Index (in blabel) of the first node drawn behind neighbour o.
function first_of(o,   b) {
    for (b = 1; b <= nb; b++) {
        if (bowner[b] == o) return b
    }
    return 0
}
