#!/usr/bin/env python3
"""Prints the demo's overlay: which node has a tunnel to which, read from
each node's babeld control socket (routes a neighbour originates itself).
Usage: topology.py DOTFILE NAME=RUNDIR=SUBNET..."""
import ipaddress, socket, sys

def dump(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(3)
    s.connect(path)
    data = b''
    s.sendall(b'dump\n')
    while not data.endswith(b'\nok\n') or data.count(b'\nok\n') < 2:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode(errors='replace').splitlines()

nodes = [a.split('=') for a in sys.argv[2:]]
subnets = {name: ipaddress.ip_network(subnet) for name, _, subnet in nodes}
edges = set()
for name, run, _ in nodes:
    try:
        lines = dump(run + '/babeld.sock')
    except OSError as e:
        print(f'{name}: babeld not reachable ({e})')
        continue
    for line in lines:
        w = line.split()
        if len(w) < 3 or w[:2] != ['add', 'route']:
            continue
        f = dict(zip(w[3::2], w[4::2]))
        if f.get('refmetric') != '0' or not f.get('if', '').startswith('re6stnet'):
            continue
        try:
            net = ipaddress.ip_network(f['prefix'])
        except (KeyError, ValueError):
            continue
        for other, sub in subnets.items():
            if net == sub and other != name:
                edges.add(tuple(sorted((name, other))))
print('overlay tunnels:')
for a, b in sorted(edges):
    print(f'  {a} -- {b}')
with open(sys.argv[1], 'w') as f:
    f.write('graph re6st {\n  node [shape=box];\n')
    for name, _, subnet in nodes:
        f.write(f'  "{name}" [label="{name}\\n{subnet}"];\n')
    for a, b in sorted(edges):
        f.write(f'  "{a}" -- "{b}";\n')
    f.write('}\n')
