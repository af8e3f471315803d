"""flowtag-export: scikit-learn models to ONNX model bundles (format 1).

A bundle is `model.onnx` + `manifest.json` (+ optional `manifest.sig`); see
`docs/bundle-format.md`. Training (`flowtag_train`) calls into this package; so do the
Airflow tasks and Kubeflow components.
"""

__version__ = "0.1.0"
FORMAT = 1
