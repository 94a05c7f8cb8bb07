"""Kubernetes deployment: render contract values into deploy/ and check the manifests offline.

- :func:`render.render_manifests` writes the values deploy/ takes from configs/system.yaml.
- :func:`checks.check_deploy` builds every Kustomize target with the pinned ``kubectl kustomize``
  (:mod:`.kubectl` fetches it: ``make kubectl``), validates each document against the
  Kubernetes and CRD schemas, and applies the policy.
- :data:`server.REQUIRED_SERVER_METRICS` lists the metric names the manifests query.
"""
