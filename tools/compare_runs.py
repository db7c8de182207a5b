"""Do two retrain.py runs give the same result?  Compares their frozen graphs, labels files and reports.

    python -m tools.compare_runs OLD_GRAPH.pb NEW_GRAPH.pb

Labels files and report folders are found beside each graph as retrain.py names them
(``--output_labels`` must be ``<graph folder>/labels.txt`` for both runs, or pass --labels).
The frozen graphs are compared node by node, with every constant's values: the
serialised bytes also hold the names TensorFlow gives to traced functions, which
differ from one process to the next even when the graph computes the same thing.
Exit status 0 when everything matches, 1 otherwise, with one line per difference.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# The parts of summary.json that a run's result consists of (timings and dates differ every run).
RESULT_KEYS = ("labels", "counts", "accuracy", "per_class", "macro", "confusion_matrix", "misclassified",
               "skipped_count")


def graph_nodes(path: Path) -> dict:
    from bottleneck.model.tf_import import quiet_tensorflow

    quiet_tensorflow("WARN")
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    nodes = {}
    for node in graph_def.node:
        attrs = {}
        for key, value in node.attr.items():
            if value.HasField("tensor"):
                attrs[key] = tf.make_ndarray(value.tensor)
            else:
                attrs[key] = value.SerializeToString(deterministic=True)
        nodes[node.name] = (node.op, tuple(node.input), attrs)
    return nodes


def compare_graphs(old: Path, new: Path) -> list[str]:
    a, b = graph_nodes(old), graph_nodes(new)
    problems = [f"node {name} only in {old}" for name in sorted(a.keys() - b.keys())]
    problems += [f"node {name} only in {new}" for name in sorted(b.keys() - a.keys())]
    for name in sorted(a.keys() & b.keys()):
        (op_a, in_a, attr_a), (op_b, in_b, attr_b) = a[name], b[name]
        if (op_a, in_a, sorted(attr_a)) != (op_b, in_b, sorted(attr_b)):
            problems.append(f"node {name} differs in op, inputs or attributes")
            continue
        for key in attr_a:
            x, y = attr_a[key], attr_b[key]
            same = np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
            if not same:
                problems.append(f"node {name}: attribute {key} differs")
    return problems


def compare_reports(old: Path, new: Path) -> list[str]:
    a, b = (json.loads(p.read_text()) for p in (old, new))
    return [f"summary.json: {key} differs" for key in RESULT_KEYS if a.get(key) != b.get(key)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old_graph", type=Path)
    p.add_argument("new_graph", type=Path)
    args = p.parse_args(argv)
    problems = compare_graphs(args.old_graph, args.new_graph)
    for graph_a, graph_b, name in ((args.old_graph, args.new_graph, "labels.txt"),):
        la, lb = graph_a.with_name(name), graph_b.with_name(name)
        if la.read_bytes() != lb.read_bytes():
            problems.append(f"{name} differs")
    reports = [g.with_name(g.stem + "_report") / "summary.json" for g in (args.old_graph, args.new_graph)]
    problems += compare_reports(*reports)
    for line in problems:
        print(line)
    print("identical results" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
