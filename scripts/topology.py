#!/usr/bin/env python3
"""Prints the demo's overlay: which node has a tunnel to which, from each
node's status (`re6st ctl status --json`: its client tunnels and the peers
on its servers), and writes it as Graphviz DOT.
Usage: topology.py RE6ST DOTFILE NAME=RUNDIR=SUBNET..."""
import ipaddress, json, subprocess, sys

re6st, dotfile = sys.argv[1], sys.argv[2]
nodes = [a.split('=') for a in sys.argv[3:]]
subnets = {name: ipaddress.ip_network(subnet) for name, _, subnet in nodes}
edges = set()
for name, run, _ in nodes:
    r = subprocess.run([re6st, 'ctl', 'status', '--json', '-r', run],
                       capture_output=True, text=True)
    if r.returncode:
        print(f'{name}: no status ({r.stderr.strip()})')
        continue
    status = json.loads(r.stdout)
    peers = [t['peer'] for t in status['tunnels'] if t['state'] == 'established']
    peers += status['served']
    for peer in peers:
        net = ipaddress.ip_network(peer)
        for other, sub in subnets.items():
            if net == sub and other != name:
                edges.add(tuple(sorted((name, other))))
print('overlay tunnels:')
for a, b in sorted(edges):
    print(f'  {a} -- {b}')
with open(dotfile, 'w') as f:
    f.write('graph re6st {\n  node [shape=box];\n')
    for name, _, subnet in nodes:
        f.write(f'  "{name}" [label="{name}\\n{subnet}"];\n')
    for a, b in sorted(edges):
        f.write(f'  "{a}" -- "{b}";\n')
    f.write('}\n')
