#!/usr/bin/env python3
"""Checks the demo's drawing (scripts/demo.sh with DEMO_SECONDS): the SVG
that Graphviz made from topology.py's DOT has exactly one node per demo
node, labelled with its name and subnet, the DOT's tunnels as its edges,
and every node has at least one tunnel (a node reaches the others only
through its tunnels, so one without any means its status was not read).
Usage: check-drawing.py SVGFILE DOTFILE NAME=SUBNET...
Prints what it found; exit status 1 on any difference."""
import re
import sys
import xml.etree.ElementTree as ET

SVG = '{http://www.w3.org/2000/svg}'
svgfile, dotfile = sys.argv[1], sys.argv[2]
want = dict(a.split('=', 1) for a in sys.argv[3:])
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
        # Graphviz titles an undirected edge "a&#45;&#45;b", i.e. "a--b".
        a, _, b = title.text.partition('--')
        edges.add(tuple(sorted((a, b))))

for name, subnet in want.items():
    if name not in nodes:
        problems.append(f'{name} is not in the drawing')
    elif nodes[name] != [name, subnet]:
        problems.append(f'{name} is labelled {nodes[name]}, want {[name, subnet]}')
for name in nodes.keys() - want.keys():
    problems.append(f'the drawing has a node {name} that is not in the demo')

dot_edges = {tuple(sorted(m)) for m in re.findall(r'^\s*"([^"]+)" -- "([^"]+)";$', open(dotfile).read(), re.M)}
if edges != dot_edges:
    problems.append(f'drawn tunnels {sorted(edges)} are not the DOT\'s {sorted(dot_edges)}')
for name in want:
    if not any(name in e for e in edges):
        problems.append(f'{name} has no tunnel in the drawing')

print(f'drawing: {len(nodes)} nodes, {len(edges)} tunnels')
for p in problems:
    print(f'FAIL: drawing: {p}')
sys.exit(1 if problems else 0)
