"""Reads a TU dataset folder (DS_A.txt, DS_graph_indicator.txt, DS_graph_labels.txt and the
optional DS_node_labels.txt, DS_node_attributes.txt) for the Python bench scripts.

Graphs come in file order, as the engine numbers them: graphs without nodes are left out, as
the engine leaves them out, so a graph's position here is its dataset index in gcleaner's
attack files. Each graph is a dict in the `gcleaner.graphs/v1` shape: `num_nodes`, `edges`
(sorted `[u, v]` with u < v, no self-loops or duplicates), `label` (the file's label), and
`node_labels` / `node_attributes` when the folder has them.
"""
import collections
from pathlib import Path


def read_tu(folder):
    folder = Path(folder)
    name = folder.name

    def rows(kind):
        path = folder / f"{name}_{kind}.txt"
        if not path.is_file():
            return None
        return [line.replace(",", " ").split() for line in path.read_text().splitlines() if line.strip()]

    indicator = [int(r[0]) for r in rows("graph_indicator")]
    labels = [int(r[0]) for r in rows("graph_labels")]
    node_labels = rows("node_labels")
    attributes = rows("node_attributes")
    nodes = collections.defaultdict(list)
    for node, graph in enumerate(indicator):
        nodes[graph - 1].append(node)
    edges = collections.defaultdict(set)
    for a, b in rows("A"):
        a, b = int(a) - 1, int(b) - 1
        graph = indicator[a] - 1
        first = nodes[graph][0]
        u, v = a - first, b - first
        if u != v:
            edges[graph].add((min(u, v), max(u, v)))
    graphs = []
    for g, label in enumerate(labels):
        members = nodes[g]
        if not members:
            continue
        graph = {"num_nodes": len(members), "edges": [list(e) for e in sorted(edges[g])], "label": label}
        if node_labels is not None:
            graph["node_labels"] = [int(node_labels[n][0]) for n in members]
        if attributes is not None:
            graph["node_attributes"] = [[float(v) for v in attributes[n]] for n in members]
        graphs.append(graph)
    return graphs
