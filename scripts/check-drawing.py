#!/usr/bin/env python3
"""Checks the demo's drawing (scripts/demo.sh with DEMO_SECONDS): the SVG
that `re6st ctl topology` made has exactly one node per demo node, titled
by its subnet and labelled with its version, the registry's node (and
only it) marked, the tunnels of the map (the command's JSON from the same
reading) as its edges, and every node has at least one tunnel (a node
reaches the others only through its tunnels).
Usage: check-drawing.py SVGFILE JSONFILE registry=NAME NAME=SUBNET...
Prints what it found; exit status 1 on any difference."""
import json
import sys
import xml.etree.ElementTree as ET

SVG = '{http://www.w3.org/2000/svg}'
svgfile, jsonfile = sys.argv[1], sys.argv[2]
want = dict(a.split('=', 1) for a in sys.argv[3:])
registry = want.pop('registry')
subnets = {subnet: name for name, subnet in want.items()}
problems = []

root = ET.parse(svgfile).getroot()
nodes, edges = {}, set()
for g in root.iter(SVG + 'g'):
    title = g.find(SVG + 'title')
    if title is None:
        continue
    if g.get('class') == 'node':
        texts = [t.text or '' for t in g.iter(SVG + 'text')]
        if title.text in nodes:
            problems.append(f'node {title.text} drawn twice')
        nodes[title.text] = texts
    elif g.get('class') == 'edge':
        # Graphviz titles an edge of a digraph "a&#45;&gt;b", i.e. "a->b".
        a, _, b = title.text.partition('->')
        edges.add((a, b))

m = json.load(open(jsonfile))
versions = {n['subnet']: n['version'] for n in m['nodes']}
for name, subnet in want.items():
    texts = nodes.get(subnet)
    if texts is None:
        problems.append(f'{name} ({subnet}) is not in the drawing')
        continue
    if texts[:1] != [subnet] or not versions.get(subnet):
        problems.append(f'{name} is labelled {texts}, want its subnet {subnet} and a version')
    elif versions[subnet].split(', ')[0] not in texts:
        problems.append(f'{name} is labelled {texts}, without its version {versions[subnet]!r}')
    if ("registry's node" in texts) != (name == registry):
        problems.append(f'{name} is labelled {texts}: the registry\'s node is {registry}')
for subnet in nodes.keys() - subnets.keys():
    problems.append(f'the drawing has a node {subnet} that is not in the demo')

json_edges = {(t['client'], t['server']) for t in m['tunnels']}
if edges != json_edges:
    problems.append(f'drawn tunnels {sorted(edges)} are not the map\'s {sorted(json_edges)}')
for name, subnet in want.items():
    if not any(subnet in e for e in edges):
        problems.append(f'{name} has no tunnel in the drawing')

print(f'drawing: {len(nodes)} nodes, {len(edges)} tunnels')
for p in problems:
    print(f'FAIL: drawing: {p}')
sys.exit(1 if problems else 0)
