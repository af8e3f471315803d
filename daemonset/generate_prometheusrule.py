"""Write the PrometheusRule resource for prometheus-operator clusters from the rule file that
Prometheus loads directly (grafana/prometheus/flowtag-rules.yaml), so both carry the same rules:

    .venv/bin/python daemonset/generate_prometheusrule.py > daemonset/base/prometheusrule.yaml

The committed output is checked to be up to date by daemonset/tests/test_manifests.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "grafana/prometheus/flowtag-rules.yaml"
HEADER = """\
# prometheus-operator: flowtag's recording and alerting rules (the CRD must be installed).
# Generated from grafana/prometheus/flowtag-rules.yaml by daemonset/generate_prometheusrule.py;
# edit the rule file and run the generator, not this file.
"""


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line expressions stay readable as block scalars.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def prometheus_rule(rules_text: str) -> str:
    groups = yaml.safe_load(rules_text)["groups"]
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "flowtag", "labels": {"app.kubernetes.io/component": "node-agent"}},
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(resource, Dumper=_Dumper, sort_keys=False, width=120)


def main() -> int:
    sys.stdout.write(prometheus_rule(RULES.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
